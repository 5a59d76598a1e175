"""notebooks/tour.ipynb: the committed notebook shows every figure, matches its paired script, and runs top to
bottom in a fresh Jupyter kernel on the shipped data."""

import os

import pytest
from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "tour.ipynb"
SCRIPT = ROOT / "notebooks" / "tour.py"
FIGURE_CALLS = ("plt.show()", "display(")  # a code cell with one of these draws a figure


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def figure_cells(notebook):
    return [cell for cell in code_cells(notebook) if any(call in cell.source for call in FIGURE_CALLS)]


def has_image(cell):
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def assert_every_figure_drawn_and_no_error(notebook):
    errors = [output for cell in code_cells(notebook) for output in cell.outputs if output.output_type == "error"]
    assert errors == [], errors[0]["ename"] if errors else ""
    cells = figure_cells(notebook)
    assert len(cells) >= 12
    missing = [cell.source.splitlines()[0] for cell in cells if not has_image(cell)]
    assert missing == [], f"figure cells without an image: {missing}"


def test_the_paired_script_holds_the_notebooks_cells():
    import jupytext
    import nbformat

    committed, paired = nbformat.read(NOTEBOOK, as_version=4), jupytext.read(SCRIPT)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in paired.cells], \
        "notebooks/tour.py and tour.ipynb differ: run `jupytext --sync notebooks/tour.ipynb`"


def test_the_committed_notebook_is_executed_and_shows_every_figure():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(cell.execution_count for cell in code_cells(notebook)), "commit the notebook with its outputs"
    assert_every_figure_drawn_and_no_error(notebook)
    text = "".join(output.get("text", "") for cell in code_cells(notebook) for output in cell.outputs)
    assert "QUICK" not in text and "1,000 train" not in text  # its numbers come from a normal run


@pytest.mark.slow
def test_the_tour_runs_in_a_fresh_kernel(tmp_path, monkeypatch):
    """On a copy (the committed notebook keeps its outputs), with TOUR_QUICK=1: 1,000 images, 1 epoch."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv("TOUR_QUICK", "1")  # the kernel inherits this process's environment
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    nbformat.write(notebook, tmp_path / "tour-executed.ipynb")  # to look at when this test fails
    assert_every_figure_drawn_and_no_error(notebook)
    assert os.path.getsize(tmp_path / "tour-executed.ipynb") > 100_000  # the figures are in it

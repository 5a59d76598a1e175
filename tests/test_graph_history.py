"""graph_history.py: plots the histories of real and old Keras runs, and refuses, in one line, a file that is not
a history."""

import pickle

import pytest
from conftest import PNG_MAGIC, assert_clean_error, run_script

from fmnist.run.records import read_history


@pytest.mark.slow
def test_plots_the_history_of_a_real_run(tiny_run):
    out, _, _ = tiny_run
    proc = run_script("graph_history.py", out / "history" / "tiny.pkl")
    assert proc.returncode == 0, proc.stderr
    png = out / "history" / "tiny.png"
    assert str(png) in proc.stdout
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 20_000


@pytest.mark.slow
def test_plots_several_runs_and_old_keras_keys_in_one_figure(tmp_path, tiny_run):
    out, _, _ = tiny_run
    old = tmp_path / "keras2.pkl"  # Keras 2.2 wrote acc/val_acc, and NumPy floats
    import numpy as np

    old.write_bytes(pickle.dumps({"acc": [np.float32(0.5), np.float32(0.7)], "val_acc": [0.6, 0.65],
                                  "loss": [1.0, 0.8], "val_loss": [0.9, 0.85]}))
    figure = tmp_path / "both.png"
    proc = run_script("graph_history.py", out / "history" / "tiny.json", old, "--out", figure)
    assert proc.returncode == 0, proc.stderr
    assert figure.read_bytes().startswith(PNG_MAGIC)
    assert read_history(old)["acc"] == pytest.approx([0.5, 0.7])


@pytest.mark.slow
def test_a_history_without_accuracy_still_plots(tmp_path):
    loss_only = tmp_path / "loss_only.pkl"
    loss_only.write_bytes(pickle.dumps({"loss": [1.0, 0.5]}))
    proc = run_script("graph_history.py", loss_only)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "loss_only.png").exists()


@pytest.mark.slow
def test_graph_history_plots_a_numpy_array_history(tmp_path):
    import numpy as np

    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps({"accuracy": np.array([0.5, 0.8]), "loss": np.array([1.0, 0.4])}, protocol=2))
    proc = run_script("graph_history.py", path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "arrays.png").read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (pickle.dumps([1, 2, 3]), "not a Keras history"),
        (pickle.dumps({"loss": "abc"}), "not a Keras history"),
        (b"this is not a pickle", "not a readable pickle"),
    ],
)
def test_a_file_that_is_not_a_history_gets_a_clear_error(tmp_path, content, message):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(content)
    assert_clean_error(run_script("graph_history.py", bad), 1, message)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.slow
def test_a_missing_file_gets_a_clear_error(tmp_path):
    assert_clean_error(run_script("graph_history.py", tmp_path / "missing.pkl"), 1, "file not found")

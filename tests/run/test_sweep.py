"""fmnist/run/sweep.py: a sweep trains one run per value and compares them in a table and a figure."""

import csv
import json
import re

import pytest
from conftest import PNG_MAGIC, run_script


@pytest.mark.slow
def test_a_sweep_trains_each_value_and_compares_them(tmp_path):
    proc = run_script("fashion_mnist.py", "--sweep", "batch_size=64,128", "--limit", 300, "--epochs", 1,
                      "--val-fraction", 0.02,
                      "--out", tmp_path, "--run-name", "sw")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 5 and 3 steps an epoch, run in calls of 8 steps: each progress bar still ends at its epoch's length.
    bars = [(int(done), int(total)) for done, total in re.findall(r"(?<!\d)(\d+)/(\d+)(?!\d)", proc.stdout)]
    assert {(5, 5), (3, 3)} <= set(bars) and all(done <= total for done, total in bars)
    history = tmp_path / "history"
    records = [json.loads((history / f"sw-batch_size{bs}.json").read_text()) for bs in (64, 128)]
    assert [r["hyperparameters"]["batch_size"] for r in records] == [64, 128]
    assert len({r["hyperparameters"]["seed"] for r in records}) == 1

    rows = list(csv.DictReader((history / "sw-results.csv").open()))
    assert [row["batch_size"] for row in rows] == ["64", "128"]
    for row, record in zip(rows, records, strict=True):
        assert float(row["test_accuracy"]) == pytest.approx(record["test"]["accuracy"], abs=1e-4)
    table = (history / "sw-results.md").read_text()
    assert table.splitlines()[2].startswith("| run | status | batch_size | epochs |")
    assert all(line in proc.stdout for line in table.splitlines()[2:])  # printed as well as saved
    assert "| sw-batch_size128 | completed | 128 | 1 |" in table

    # graph_history.py draws the very same figure from the saved pickles
    figure = history / "sw-compare.png"
    assert figure.read_bytes().startswith(PNG_MAGIC)
    again = tmp_path / "again.png"
    title = "Sweep sw: batch_size = 64, 128"
    replot = run_script("graph_history.py", history / "sw-batch_size64.pkl", history / "sw-batch_size128.pkl",
                        "--validation-only", "--title", title, "--out", again)
    assert replot.returncode == 0, replot.stderr
    assert again.read_bytes() == figure.read_bytes()
    assert "graph_history.py" in proc.stdout and "--validation-only" in proc.stdout

import json

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow  # every test here trains or starts processes


def test_cnn_learns_fashion_mnist_from_10000_images(tmp_path):
    """Chance is 10 %; a net that only memorised or did not train stays far below 80 % on the test set."""
    proc = run_script("fashion_mnist.py", "--limit", 10_000, "--epochs", 2, "--batch-size", 64,
                      "--out", tmp_path, "--run-name", "learn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "history" / "learn.json").read_text())
    assert record["test"]["accuracy"] >= 0.80, record["test"]
    assert record["test"]["top5_accuracy"] >= 0.98

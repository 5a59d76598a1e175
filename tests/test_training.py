"""fmnist/training.py and the training script end to end: a real run writes every output, learns, and repeats
itself exactly under --deterministic."""

import json
import pickle

import pytest
from conftest import run_script, start_script


@pytest.mark.slow
def test_end_to_end_run_writes_every_output(tiny_run):
    import keras
    import numpy as np

    out, proc, record = tiny_run
    assert "Test accuracy" in proc.stdout and "top-5" in proc.stdout
    assert "shipped copy" in proc.stdout  # the data source is printed
    assert "\x1b" not in proc.stdout  # output to a pipe: the plain one-line-per-epoch progress, no escape codes

    history = pickle.loads((out / "history" / "tiny.pkl").read_bytes())
    assert set(history) >= {"loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy"}
    assert all(isinstance(v, list) and len(v) == 1 for v in history.values())

    for key in ("run", "model", "hyperparameters", "epochs_run", "train_seconds", "test", "files"):
        assert key in record
    assert record["run"] == "tiny" and record["model"] == "cnn" and record["epochs_run"] == 1
    assert record["hyperparameters"]["limit"] == 1000
    assert 0.1 < record["test"]["accuracy"] <= record["test"]["top5_accuracy"] <= 1

    assert list((out / "tensorboard_logs" / "tiny").rglob("events.out.tfevents.*"))
    model = keras.saving.load_model(out / "models" / "tiny.keras")
    assert model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)


@pytest.mark.slow
def test_cnn_learns_fashion_mnist_from_10000_images(tmp_path):
    """Chance is 10 %; a net that only memorised or did not train stays far below 80 % on the test set."""
    proc = run_script("fashion_mnist.py", "--limit", 10_000, "--epochs", 2, "--batch-size", 64,
                      "--out", tmp_path, "--run-name", "learn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "history" / "learn.json").read_text())
    assert record["test"]["accuracy"] >= 0.80, record["test"]
    assert record["test"]["top5_accuracy"] >= 0.98


@pytest.mark.slow
def test_deterministic_runs_give_identical_histories(tmp_path):
    runs = {name: start_script("fashion_mnist.py", "--limit", 500, "--val-fraction", 0.02, "--epochs", 1, "--seed", 7,
                               "--deterministic", "--out", tmp_path, "--run-name", name, log=tmp_path / f"{name}.log")
            for name in ("first", "second")}  # side by side, to halve the wait
    histories = []
    for name, proc in runs.items():
        assert proc.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        histories.append(pickle.loads((tmp_path / "history" / f"{name}.pkl").read_bytes()))
        assert json.loads((tmp_path / "history" / f"{name}.json").read_text())["hyperparameters"]["deterministic"]
    assert histories[0] == histories[1]  # exactly equal, not approximately


def test_the_progress_bar_has_no_escape_codes_when_stdout_is_not_a_terminal(monkeypatch):
    import io
    import sys

    from fmnist.training import EpochProgbarLogger

    monkeypatch.setattr("sys.stdout", io.StringIO())
    bar = EpochProgbarLogger()
    bar.set_params({"verbose": 1, "epochs": 1, "steps": 4})
    assert bar.verbose == 2  # Keras's one line per epoch
    bar.on_train_begin()
    bar.on_epoch_begin(0)
    for step in range(4):
        bar.on_train_batch_end(step, {"loss": 1.0})
    bar.on_epoch_end(0, {"loss": 1.0})
    printed = sys.stdout.getvalue()
    assert "4/4" in printed and "loss" in printed and "\x1b" not in printed

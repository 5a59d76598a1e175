import json
import pickle

import pytest
from conftest import ROOT, assert_clean_error, run_script


def test_help_lists_every_flag_without_importing_tensorflow():
    import subprocess
    import sys

    code = ("import runpy, sys; sys.argv = ['fashion_mnist.py', '--help']\n"
            "try: runpy.run_path('fashion_mnist.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("TF_NOT_LOADED")
    for flag in ("--model", "--epochs", "--batch-size", "--learning-rate", "--limit", "--seed", "--data-dir",
                 "--out", "--run-name"):
        assert flag in proc.stdout
    assert "(default: 20)" in proc.stdout and "(default: 0.001)" in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "many"], "--epochs"),
        (["--batch-size", "-5"], "--batch-size"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--model", "vgg"], "--model"),
        (["--run-name", "../escape"], "--run-name"),
        (["--no-such-flag"], "unrecognized"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(args, message):
    assert_clean_error(run_script("fashion_mnist.py", *args), 2, message)


def test_end_to_end_run_writes_every_output(tiny_run):
    import keras
    import numpy as np

    out, proc, record = tiny_run
    assert "Test accuracy" in proc.stdout and "top-5" in proc.stdout
    assert "shipped copy" in proc.stdout  # the data source is printed

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


def test_a_run_name_is_never_reused_and_nothing_is_overwritten(tiny_run):
    out, _, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = run_script("fashion_mnist.py", "--limit", 1000, "--epochs", 1, "--out", out, "--run-name", "tiny")
    assert_clean_error(proc, 1, "already exists")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_an_unwritable_out_fails_before_training(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("I am a file")
    proc = run_script("fashion_mnist.py", "--limit", 1000, "--out", not_a_folder)
    assert_clean_error(proc, 1, "cannot write to --out")
    assert "Epoch 1" not in proc.stdout


def test_missing_data_names_the_folder(tmp_path):
    proc = run_script("fashion_mnist.py", "--data-dir", tmp_path / "nowhere", "--out", tmp_path)
    assert_clean_error(proc, 1, "nowhere", "no such folder")


def test_run_record_is_valid_json_with_the_history(tiny_run):
    out, _, record = tiny_run
    assert record["history"] == pickle.loads((out / "history" / "tiny.pkl").read_bytes())
    json.dumps(record, allow_nan=False)  # strict JSON: no NaN or Infinity

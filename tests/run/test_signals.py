"""fmnist/run/signals.py: interruption by SIGINT, SIGTERM and SIGKILL loses nothing, and the printed --resume
command completes the run. Every scenario is a real training subprocess on a small --limit run."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SMALL, run_script, start_script, wait_for_epochs

from fmnist.run.records import read_history

pytestmark = pytest.mark.slow  # every test here trains or starts processes


def interrupt_after_first_epoch(out, name, signum, tmp_path):
    """Start a run (with a generated name when `name` is None), signal it once its first epoch is saved."""
    log = tmp_path / f"{name or 'unnamed'}.log"
    proc = start_script("fashion_mnist.py", *SMALL, "--out", out, *(["--run-name", name] if name else []), log=log)
    if name is None:
        # The run's name is claimed by creating tensorboard_logs/<run>/. (Not history/*.json: pathlib's `*` also
        # matches the hidden temporary file of the record's atomic write.)
        deadline = time.monotonic() + 300
        while not (claimed := list((out / "tensorboard_logs").glob("*/"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        (claimed_folder,) = claimed
        name = claimed_folder.name
    wait_for_epochs(proc, out / "history" / f"{name}.json", 1, log)
    proc.send_signal(signum)
    proc.wait(timeout=120)
    return proc.returncode, log.read_text()


def assert_every_file_loads(out):
    """No torn file: every history, record, model and backup that exists loads completely."""
    import h5py
    import keras

    for path in sorted(p for p in out.rglob("*") if p.is_file() and ".tmp" not in p.name):
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pkl":
            read_history(path)
        elif path.name.endswith(".weights.h5"):
            with h5py.File(path) as f:
                assert "optimizer" in f and "layers" in f
        elif path.suffix == ".keras":
            keras.saving.load_model(path)


def assert_resumes_to_completion(out, name, interrupted):
    done = interrupted["epochs_run"]
    proc = run_script("fashion_mnist.py", "--resume", name, "--out", out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"Resuming {name} after epoch {done}" in proc.stdout
    record = json.loads((out / "history" / f"{name}.json").read_text())
    assert record["status"] == "completed" and record["epochs_run"] == 2
    assert record["hyperparameters"] == interrupted["hyperparameters"]
    history = read_history(out / "history" / f"{name}.pkl")
    assert history == record["history"]
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    # One history over all epochs: the interrupted run's epochs unchanged, then the resumed ones.
    for key, values in history.items():
        assert len(values) == 2
        assert values[:done] == interrupted["history"][key]
    assert record["train_seconds"] > interrupted["train_seconds"]
    assert 0.1 < record["test"]["accuracy"] <= 1
    assert not (out / "models" / f"{name}.backup").exists()  # a completed run needs no backup
    assert_every_file_loads(out)


def test_ctrl_c_stops_cleanly_and_the_run_resumes_to_one_history(tmp_path):
    out = tmp_path / "out"
    code, log = interrupt_after_first_epoch(out, "ctrlc", signal.SIGINT, tmp_path)
    assert code == 130, log[-3000:]
    assert "Traceback" not in log
    assert f"python fashion_mnist.py --resume ctrlc --out {out}" in log
    record = json.loads((out / "history" / "ctrlc.json").read_text())
    assert record["status"] == "interrupted" and record["test"] is None
    assert record["epochs_run"] == 1
    history = read_history(out / "history" / "ctrlc.pkl")
    assert history == record["history"] and len(history["loss"]) == record["epochs_run"]
    backups = list((out / "models" / "ctrlc.backup").iterdir())
    assert [b.name for b in backups] == [f"epoch-{record['epochs_run']:04d}.weights.h5"]
    assert (out / "models" / "ctrlc.keras").is_file()  # the best model so far is kept
    assert_every_file_loads(out)
    assert_resumes_to_completion(out, "ctrlc", record)


def test_the_printed_resume_command_of_a_run_with_a_generated_name_completes_it(tmp_path):
    out = tmp_path / "out"
    code, log = interrupt_after_first_epoch(out, None, signal.SIGINT, tmp_path)
    assert code == 130, log[-3000:]
    (record_path,) = (out / "history").glob("*.json")
    command = log.split("To continue:\n", 1)[1].splitlines()[0].strip()
    assert command == f"python fashion_mnist.py --resume {record_path.stem} --out {out}"
    words = shlex.split(command)
    proc = subprocess.run([sys.executable, *words[1:]], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))  # as printed, from the project folder
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(record_path.read_text())
    assert record["status"] == "completed" and record["epochs_run"] == 2


def test_sigterm_stops_cleanly_with_exit_143(tmp_path):
    out = tmp_path / "out"
    code, log = interrupt_after_first_epoch(out, "term", signal.SIGTERM, tmp_path)
    assert code == 143, log[-3000:]
    assert "Traceback" not in log and "--resume term" in log
    record = json.loads((out / "history" / "term.json").read_text())
    assert record["status"] == "interrupted" and record["epochs_run"] == 1
    assert len(read_history(out / "history" / "term.pkl")["val_loss"]) == record["epochs_run"]
    assert_every_file_loads(out)


def test_sigkill_leaves_no_torn_file_and_the_run_still_resumes(tmp_path):
    out = tmp_path / "out"
    code, log = interrupt_after_first_epoch(out, "killed", signal.SIGKILL, tmp_path)
    assert code == -signal.SIGKILL
    record = json.loads((out / "history" / "killed.json").read_text())
    assert record["status"] == "running" and record["epochs_run"] >= 1  # it died without a word
    assert_every_file_loads(out)
    assert_resumes_to_completion(out, "killed", record)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # the resume cleared any half-saved temporary

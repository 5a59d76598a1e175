"""Nothing lost: interruption by SIGINT, SIGTERM and SIGKILL, resuming, atomic files, divergence, determinism.

Every scenario is a real training subprocess on a small --limit run.
"""

import contextlib
import json
import math
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, assert_clean_error, run_code, run_script, start_script

from fmnist.run.records import read_history

pytestmark = pytest.mark.slow  # every test here trains or starts processes

# A few seconds an epoch; a small validation set keeps the epoch ends quick too.
SMALL = ("--limit", 1000, "--val-fraction", 0.02, "--epochs", 2)


def wait_for_epochs(proc, record, epochs, log, timeout=300):
    """Poll the run record (rewritten atomically after every epoch) until it holds `epochs` completed epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        if record.exists() and json.loads(record.read_text())["epochs_run"] >= epochs:  # never torn: no retry
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no record of {epochs} epochs after {timeout} s")


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


def test_an_interrupted_save_leaves_the_previous_model_intact(tmp_path):
    """What os.replace buys: a save that dies half-way (here: a full disk) changes nothing on disk."""
    import keras

    from fmnist.models import build_model
    from fmnist.run.checkpoints import save_atomically

    model = build_model("mlp")
    path = tmp_path / "best.keras"
    save_atomically(model, path)
    before = path.read_bytes()

    def dies_half_way(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(before[:100])
        raise OSError(28, "No space left on device")

    model.save = dies_half_way
    with pytest.raises(OSError, match="No space"):
        save_atomically(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
    assert keras.saving.load_model(path).count_params() == model.count_params()


@pytest.mark.parametrize("keep, kept_epoch", [("best", 1), ("last", 2)])
def test_the_checkpoint_keeps_the_best_or_the_last_epoch_and_never_a_diverged_one(tmp_path, keep, kept_epoch):
    import keras
    import numpy as np

    from fmnist.models import build_model
    from fmnist.run.checkpoints import KeptModelCheckpoint

    model = build_model("mlp")
    path = tmp_path / "kept.keras"
    checkpoint = KeptModelCheckpoint(path, keep)
    checkpoint.set_model(model)
    weights = {}
    for epoch, val_loss in enumerate([0.5, 0.7, float("nan")]):  # epoch 1 is the best, epoch 2 the last sane one
        model.layers[-1].bias.assign(np.full(10, epoch + 1.0))  # marks which epoch the file holds
        weights[epoch] = model.layers[-1].bias.numpy()
        checkpoint.on_epoch_end(epoch, {"val_loss": val_loss})
    kept = keras.saving.load_model(path).layers[-1].bias.numpy()
    assert np.array_equal(kept, weights[kept_epoch - 1])


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_history(tmp_path):
    proc = run_script("fashion_mnist.py", "--limit", 500, "--val-fraction", 0.02, "--epochs", 3,
                      "--learning-rate", 1e9, "--out", tmp_path, "--run-name", "nan")
    assert_clean_error(proc, 1, "training diverged", "--learning-rate")
    record = json.loads((tmp_path / "history" / "nan.json").read_text())
    assert record["status"] == "diverged" and record["test"] is None and record["epochs_run"] == 1
    history = read_history(tmp_path / "history" / "nan.pkl")
    assert math.isnan(history["loss"][-1])
    assert not (tmp_path / "models" / "nan.backup").exists()
    # Nor can it be resumed: there is nothing sensible to continue.
    assert_clean_error(run_script("fashion_mnist.py", "--resume", "nan", "--out", tmp_path), 1,
                       "is diverged", "only an interrupted run")


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


def test_resume_of_a_run_that_does_not_exist(tmp_path):
    assert_clean_error(run_script("fashion_mnist.py", "--resume", "ghost", "--out", tmp_path), 1,
                       "no run named 'ghost'")


def test_resume_of_a_completed_run_is_refused_and_changes_nothing(tiny_run):
    out, _, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert_clean_error(run_script("fashion_mnist.py", "--resume", "tiny", "--out", out), 1,
                       "'tiny' is completed", "only an interrupted run")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_resume_of_a_record_that_is_not_a_run_record(tmp_path):
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "odd.json").write_text('{"run": "odd"}')
    assert_clean_error(run_script("fashion_mnist.py", "--resume", "odd", "--out", tmp_path), 1,
                       "not a run record")


@pytest.mark.parametrize("flags", [["--epochs", "9"], ["--no-verify"], ["--learning-rate=0.1", "--seed", "3"],
                                   ["--run-name", "other"], ["--sweep", "epochs=1,2"]])
def test_resume_refuses_settings_that_differ_from_the_record(flags):
    proc = run_script("fashion_mnist.py", "--resume", "some-run", *flags)
    assert_clean_error(proc, 2, "--resume continues a run with the settings in its record", flags[0].split("=")[0])


def _snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_a_run_in_use_is_refused_to_a_second_process_and_freed_when_its_process_dies(tmp_path):
    """The run stopped with Ctrl-Z (SIGSTOP), mid-training: --resume names its process and touches nothing. Once it
    is killed the lock is gone, and --resume removes the run's own temporary files but not those of run
    `busy.keras`, whose names start the same way."""
    import os

    out = tmp_path / "out"
    log = tmp_path / "busy.log"
    proc = start_script("fashion_mnist.py", "--limit", 1000, "--val-fraction", 0.02, "--epochs", 3, "--out", out,
                        "--run-name", "busy", log=log)
    try:
        wait_for_epochs(proc, out / "history" / "busy.json", 1, log)
        os.kill(proc.pid, signal.SIGSTOP)
        own_in_flight = out / "models" / ".busy.keras.x1y2z3ab.tmp.keras"
        others_in_flight = out / "models" / ".busy.keras.keras.q9w8e7rt.tmp.keras"  # run `busy.keras`'s model
        own_in_flight.write_bytes(b"half a model")
        others_in_flight.write_bytes(b"half a model")
        before = _snapshot(out)
        second = run_script("fashion_mnist.py", "--resume", "busy", "--out", out)
        assert_clean_error(second, 1, f"run busy is being trained by process {proc.pid}")
        assert _snapshot(out) == before
    finally:
        proc.kill()
        proc.wait(timeout=60)
    resumed = run_script("fashion_mnist.py", "--resume", "busy", "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "history" / "busy.json").read_text())["status"] == "completed"
    assert not own_in_flight.exists() and others_in_flight.exists()


def test_temporary_files_of_a_file_are_its_own_only(tmp_path):
    from fmnist.run.files import temporary_files

    model = tmp_path / "a.keras"
    own = [tmp_path / ".a.keras.k3j_x9a1.tmp.keras"]
    others = [tmp_path / ".a.keras.keras.k3j_x9a1.tmp.keras", tmp_path / ".a.keras.k3j.tmp.keras.tmp.keras",
              tmp_path / ".ab.keras.k3j_x9a1.tmp.keras", tmp_path / "a.keras.k3j_x9a1.tmp.keras"]
    for path in own + others:
        path.write_bytes(b"")
    assert temporary_files(model) == own


def test_claimed_names_are_never_handed_out_twice(tmp_path):
    """Evaluations and sweeps claim their output stem by creating a file exclusively, so that two processes
    started at once take different names; a run name is claimed by its folder."""
    from fmnist.run.names import claimed_name, reserve_run

    suffixes = ["-evaluation.json", "-confusion.png"]
    with contextlib.ExitStack() as held:
        claims = [held.enter_context(claimed_name(tmp_path, "m", suffixes, "-evaluation.json")) for _ in range(3)]
        assert claims == ["m", "m-2", "m-3"]
        (tmp_path / "m-4-confusion.png").write_bytes(b"")  # a user's file: its name is skipped, not replaced
        assert held.enter_context(claimed_name(tmp_path, "m", suffixes, "-evaluation.json")) == "m-5"
    assert not (tmp_path / "m-evaluation.json").exists()  # a claim left empty gives its name back
    first = reserve_run(tmp_path / "out", None, "cnn-20260101-000000")
    second = reserve_run(tmp_path / "out", None, "cnn-20260101-000000")
    assert (first.name, second.name) == ("cnn-20260101-000000", "cnn-20260101-000000-2")


def test_a_run_reserved_by_one_process_is_refused_to_another(tmp_path):
    import os
    import subprocess
    import sys

    from fmnist.run.names import reserve_run

    paths = reserve_run(tmp_path, "mine", None)
    script = ("import sys\nfrom pathlib import Path\nfrom fmnist.run.names import RunPaths, lock_run\n"
              "lock_run(RunPaths('mine', *[Path(p) for p in sys.argv[1:]]))")
    other = subprocess.run([sys.executable, "-c", script, paths.model, paths.history, paths.record, paths.tensorboard],
                           capture_output=True, text=True, cwd=ROOT)
    assert f"run mine is being trained by process {os.getpid()}" in other.stderr
    assert (paths.tensorboard / ".lock").read_text() == f"{os.getpid()}\n"


def _resume_config(out, name="r"):
    from fashion_mnist import DEFAULTS
    from fmnist.config import parse_config

    return parse_config(["--resume", name, "--out", str(out)], DEFAULTS)[0]


def _write_record(out, hyperparameters=None, name="r", **fields):
    """A record as an interrupted run leaves it, with the settings of a default run unless given."""
    record = {"run": name, "status": "interrupted", "epochs_run": 1, "train_seconds": 12.5,
              "hyperparameters": _resume_config(out, name).hyperparameters() if hyperparameters is None
              else hyperparameters, "history": {"loss": [1.0], "val_loss": [0.9]}} | fields
    (out / "history").mkdir(parents=True, exist_ok=True)
    (out / "history" / f"{name}.json").write_text(json.dumps(record) if not isinstance(record, str) else record)
    return record


BAD_SETTINGS = [
    ("out", "/somewhere/else", "hyperparameters.out is not a setting a run records"),
    ("data_dir", "/other/data", "hyperparameters.data_dir is not a setting"),
    ("resume", "other", "hyperparameters.resume is not a setting"),
    ("run_name", "other", "hyperparameters.run_name is not a setting"),
    ("worker_timeout", 5, "hyperparameters.worker_timeout is not a setting"),
    ("strategy", "Multiworker", "hyperparameters.strategy: 'Multiworker' is not one of"),
    ("strategy", "ring", "hyperparameters.strategy: 'ring' is not one of"),
    ("strategy", "multiworker", "which --resume does not support"),
    ("batch_size", 0, "hyperparameters.batch_size: 0 is out of range"),
    ("epochs", "3", "hyperparameters.epochs: '3' is not a valid int"),
    ("epochs", 2.0, "hyperparameters.epochs: 2.0 is not a valid int"),
    ("epochs", True, "hyperparameters.epochs: True is not a valid int"),
    ("learning_rate", float("nan"), "hyperparameters.learning_rate: nan is not a finite number"),
    ("learning_rate", "0.1", "hyperparameters.learning_rate: '0.1' is not a valid float"),
    ("resnet_width", 1_000_000, "hyperparameters.resnet_width: 1000000 is out of range"),
    ("tta", "bogus", "hyperparameters.tta: 'bogus' is not one of"),
    ("model", "CNN", "hyperparameters.model: 'CNN' is not one of"),
    ("seed", 2**32, "hyperparameters.seed: 4294967296 is out of range"),
    ("limit", 5, "hyperparameters.limit: 5 is out of range"),
    ("deterministic", "yes", "hyperparameters.deterministic: 'yes' is not true or false"),
    ("verify", 0, "hyperparameters.verify: 0 is not true or false"),
    ("val_fraction", [0.1], "hyperparameters.val_fraction: [0.1] is not a valid float"),
    ("augment", None, "hyperparameters.augment: None is not one of"),
    ("fast_ops", None, "hyperparameters.fast_ops: None is not true or false"),
]


@pytest.mark.parametrize("field, value, message", BAD_SETTINGS, ids=[f"{f}={v!r}" for f, v, _ in BAD_SETTINGS])
def test_resume_checks_every_setting_in_the_record_as_its_flag_would(tmp_path, field, value, message):
    from fmnist.errors import UserError
    from fmnist.run.resume import read_resume_point

    config = _resume_config(tmp_path)
    _write_record(tmp_path, config.hyperparameters() | {field: value})
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        read_resume_point(config)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "tensorboard_logs").exists()  # refused before the lock file is made


@pytest.mark.parametrize("record, message", [
    ("[1, 2]", "no hyperparameters"),
    ('{"status": "interrupted", "hyperparameters": [["model", "cnn"]]}', "no hyperparameters"),
    ("[" * 100_000 + "]" * 100_000, "RecursionError"),
    ('{"status": ["interrupted"], "hyperparameters": {}}', "is ['interrupted']; only an interrupted run"),
])
def test_resume_refuses_a_record_of_the_wrong_shape_in_one_line(tmp_path, record, message):
    from fmnist.errors import UserError
    from fmnist.run.resume import read_resume_point

    _write_record(tmp_path, name="r")
    (tmp_path / "history" / "r.json").write_text(record)
    with pytest.raises(UserError, match=re.escape(message)) as refused:
        read_resume_point(_resume_config(tmp_path))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("fields, message", [
    ({"history": [1.0, 0.5]}, "not a Keras history"),
    ({"train_seconds": "12"}, "train_seconds = '12' is not a number of seconds"),
])
def test_resume_refuses_a_history_or_time_of_the_wrong_type(tmp_path, fields, message):
    from fmnist.errors import UserError
    from fmnist.run.resume import read_resume_point

    _write_record(tmp_path, **fields)
    with pytest.raises(UserError, match=re.escape(message)):
        read_resume_point(_resume_config(tmp_path))


def test_resume_takes_a_checked_record_and_maps_the_old_tta_switch(tmp_path):
    from fmnist.run.resume import read_resume_point

    config = _resume_config(tmp_path)
    settings = config.hyperparameters() | {"model": "lenet", "epochs": 7, "learning_rate": 0.002, "limit": None,
                                           "deterministic": True, "tta": True}
    _write_record(tmp_path, settings)
    resumed, earlier = read_resume_point(config)
    assert (resumed.model, resumed.epochs, resumed.learning_rate, resumed.tta) == ("lenet", 7, 0.002, "flip")
    assert resumed.out == str(tmp_path) and resumed.run_name == "r" and resumed.deterministic is True
    assert earlier.history == {"loss": [1.0], "val_loss": [0.9]} and earlier.train_seconds == 12.5
    _write_record(tmp_path, settings | {"tta": False}, name="r2")
    assert read_resume_point(_resume_config(tmp_path, "r2"))[0].tta == "none"
    older = {key: value for key, value in settings.items() if key not in ("keep", "precision")}
    _write_record(tmp_path, older, name="r3")  # a record from before --keep: today's default fills it in
    assert read_resume_point(_resume_config(tmp_path, "r3"))[0].keep == config.keep


def test_a_bad_record_is_refused_in_one_line_before_tensorflow_loads(tmp_path):
    _write_record(tmp_path, _resume_config(tmp_path).hyperparameters() | {"batch_size": 0})
    code = ("import runpy, sys\nsys.argv = ['fashion_mnist.py', '--resume', 'r', '--out', sys.argv[1]]\n"
            "try:\n    runpy.run_path('fashion_mnist.py', run_name='__main__')\n"
            "finally:\n    print('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    proc = run_code(code, tmp_path)
    assert_clean_error(proc, 1, "hyperparameters.batch_size: 0 is out of range")
    assert "tensorflow loaded: False" in proc.stdout


def test_a_crash_mid_training_says_how_to_resume_and_the_run_resumes(tmp_path):
    """An error inside training (a MemoryError at the end of the first epoch, as running out of memory would
    raise): one error line and the --resume command; the completed epoch is kept and the run continues from it."""
    code = ("import sys\nimport keras\nimport fashion_mnist\nfrom fmnist.errors import run_guarded\n"
            "class Crash(keras.callbacks.Callback):\n"
            "    def on_epoch_end(self, epoch, logs=None):\n        raise MemoryError('out of memory')\n"
            "run_guarded(lambda: fashion_mnist.main(sys.argv[1:], extra_callbacks=[Crash()]))\n")
    proc = run_code(code, *SMALL, "--out", tmp_path, "--run-name", "crash")
    assert_clean_error(proc, 1, "MemoryError: out of memory")
    assert "Training failed after 1 of 2 epochs" in proc.stderr
    assert f"python fashion_mnist.py --resume crash --out {tmp_path}" in proc.stderr
    record = tmp_path / "history" / "crash.json"
    assert json.loads(record.read_text())["epochs_run"] == 1

    resumed = run_script("fashion_mnist.py", "--resume", "crash", "--out", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    finished = json.loads(record.read_text())
    assert finished["status"] == "completed" and finished["epochs_run"] == 2

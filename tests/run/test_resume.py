"""fmnist/run/resume.py: --resume reads an interrupted run's record back, checking every setting as its flag would,
and refuses, in one line, a run that is missing, completed, of the wrong shape or given other settings."""

import json
import re

import pytest
from conftest import SMALL, assert_clean_error, run_code, run_script

pytestmark = pytest.mark.slow  # every test here trains or starts processes


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

"""Resuming a run: the settings and history that an interrupted run's record holds, and how to continue it.

fmnist.run.checkpoints keeps these files current during training (RunRecorder) and restores the model from them.
No TensorFlow here, so that a bad --resume is refused at once.
"""

import dataclasses
import json
import math
import shlex

from fmnist.config import check_settings
from fmnist.errors import UserError, error_text
from fmnist.run.names import lock_run, reopen_run
from fmnist.run.records import check_history, read_capped

RESUMABLE = ("running", "interrupted")  # "running" in a record means the process died without a word


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: the history and training time of the epochs an interrupted run completed (none for
    FRESH_START)."""

    history: dict  # {metric: [one value per completed epoch]}
    train_seconds: float

    @property
    def epochs(self):
        return len(self.history.get("loss", []))


FRESH_START = ResumePoint({}, 0.0)


def read_resume_point(config):
    """The settings (from the record, with --out and --data-dir as given now) and the history of run --resume.

    The record is a file like any other: each setting in it is checked as its flag would be, and anything
    else is refused in one line naming the field, before any training.
    """
    paths = reopen_run(config.out, config.resume)
    _checked_record(paths, config)  # a record that cannot be resumed is refused before the lock file is touched
    lock_run(paths)  # from here until the process exits, no other process can use the run
    record, resumed = _checked_record(paths, config)  # again: the run may have moved on while this one started
    history = check_history(record["history"], paths.record) if record.get("history") else {}
    return resumed, ResumePoint(history, float(record.get("train_seconds", 0.0)))


def _checked_record(paths, config):
    """The run record, and `config` with the settings in it, if it is the record of a run this version can
    resume."""
    record = _read_record(paths, config.resume)
    resumed = _with_recorded_settings(config, record["hyperparameters"], paths.record)
    if resumed.strategy == "multiworker":  # the other workers cannot be relied on to see the chief's files
        raise UserError(f"run {config.resume!r} trained with --strategy multiworker, which --resume does not "
                        "support; start a new run")
    train_seconds = record.get("train_seconds", 0.0)
    if type(train_seconds) not in (int, float) or not 0 <= train_seconds < math.inf:
        raise UserError(f"{paths.record}: train_seconds = {train_seconds!r:.60} is not a number of seconds; "
                        "not a run record this version can resume")
    return record, resumed


def _with_recorded_settings(config, recorded, record_path):
    """`config` with the record's settings, each checked as its flag would be (fmnist.config.check_settings).
    Only recorded settings are taken: where the files are (--out, --data-dir) is the command line's alone."""
    recordable = {setting.name for setting in config.SETTINGS if setting.recorded}
    settings = dict(recorded)
    for name in settings:
        if name not in recordable:
            raise UserError(f"{record_path}: hyperparameters.{name!s:.60} is not a setting a run records; "
                            "not a run record this version can resume")
    if isinstance(settings.get("tta"), bool):  # a record from when --tta was on or off: on meant the mirror
        settings["tta"] = "flip" if settings["tta"] else "none"
    try:
        return check_settings(config, {**settings, "run_name": config.resume})  # a setting it lacks keeps today's
    except ValueError as e:
        raise UserError(f"{record_path}: hyperparameters.{e}; not a run record this version can resume") from None


def _read_record(paths, name):
    """The run record as a dict, if it is one of a run that can be resumed."""
    try:
        record = json.loads(read_capped(paths.record))
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"{paths.record}: not a run record this version can resume "
                        f"({error_text(e)})") from None
    if not isinstance(record, dict) or not isinstance(record.get("hyperparameters"), dict):
        raise UserError(f"{paths.record}: not a run record this version can resume (no hyperparameters)")
    status = record.get("status")
    if status not in RESUMABLE:
        raise UserError(f"run {name!r} is {status!s:.60}; only an interrupted run can be resumed")
    return record


def resume_command(config, run_name):
    """The command line that continues the run `run_name` (its name may have been generated, not typed)."""
    words = ["python", "fashion_mnist.py", "--resume", run_name]
    if config.out != ".":
        words += ["--out", config.out]
    if config.data_dir:
        words += ["--data-dir", config.data_dir]
    return shlex.join(words)

"""Resuming a run: the settings and history that an interrupted run's record holds, and how to continue it.

fmnist.checkpoints keeps these files current during training (RunKeeper) and restores the model from them.
No TensorFlow here, so that a bad --resume is refused at once.
"""

import dataclasses
import json
import shlex

from fmnist import UserError
from fmnist.history import read_history
from fmnist.runs import lock_run, reopen_run

RESUMABLE = ("running", "interrupted")  # "running" in a record means the process died without a word


@dataclasses.dataclass(frozen=True)
class RunSoFar:
    history: dict  # {metric: [one value per completed epoch]}
    train_seconds: float

    @property
    def epochs(self):
        return len(self.history.get("loss", []))


NEW_RUN = RunSoFar({}, 0.0)


def read_resume_point(config):
    """The settings (from the record, with --out and --data-dir as given now) and the history of run --resume."""
    paths = reopen_run(config.out, config.resume)
    _read_record(paths, config.resume)  # a completed run is refused before its lock file is touched
    lock_run(paths)  # from here until the process exits, no other process can use the run
    record = _read_record(paths, config.resume)  # again: the run may have ended while this process started
    settings = dict(record["hyperparameters"])
    try:
        if isinstance(settings.get("tta"), bool):  # a record from when --tta was on or off: on meant the mirror
            settings["tta"] = "flip" if settings["tta"] else "none"
        config = dataclasses.replace(config, run_name=config.resume, **settings)
    except (ValueError, TypeError) as e:
        raise UserError(f"{paths.record}: not a run record this version can resume ({type(e).__name__}: {e})") from None
    if config.strategy == "multiworker":  # the other workers cannot be relied on to see the chief's files
        raise UserError(f"run {config.resume!r} trained with --strategy multiworker, which --resume does not "
                        "support; start a new run")
    history = read_history(paths.record) if record.get("history") else {}
    return config, RunSoFar(history, float(record.get("train_seconds", 0.0)))


def _read_record(paths, name):
    """The run record as a dict, if it is one of a run that can be resumed."""
    try:
        record = json.loads(paths.record.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"{paths.record}: not a run record this version can resume "
                        f"({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(record, dict) or not isinstance(record.get("hyperparameters"), dict):
        raise UserError(f"{paths.record}: not a run record this version can resume (no hyperparameters)")
    status = record.get("status")
    if status not in RESUMABLE:
        raise UserError(f"run {name!r} is {status}; only an interrupted run can be resumed")
    return record


def backup_file(paths, epochs):
    """The backup of the run's weights and optimizer state after `epochs` completed epochs."""
    return paths.backup / f"epoch-{epochs:04d}.weights.h5"


def resume_command(config):
    """The command line that continues this run."""
    words = ["python", "fashion_mnist.py", "--resume", config.run_name]
    if config.out != ".":
        words += ["--out", config.out]
    if config.data_dir:
        words += ["--data-dir", config.data_dir]
    return shlex.join(words)

"""Run names and the files a run writes under --out."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

from fmnist import UserError


@dataclass(frozen=True)
class RunPaths:
    name: str
    model: Path  # models/<run>.keras, the best model by validation loss
    history: Path  # history/<run>.pkl, the Keras History.history dict
    record: Path  # history/<run>.json, the run record
    tensorboard: Path  # tensorboard_logs/<run>/

    @property
    def backup(self):
        """models/<run>.backup/: weights and optimizer state of the last completed epoch, for --resume."""
        return self.model.with_name(f"{self.name}.backup")

    def backup_file(self, epochs):
        """The backup of the run's weights and optimizer state after `epochs` completed epochs."""
        return self.backup / f"epoch-{epochs:04d}.weights.h5"

    def files(self):
        return {"model": str(self.model), "history": str(self.history), "record": str(self.record),
                "tensorboard": str(self.tensorboard)}


def claim_run(config, out):
    """The run's files under `out`: an interrupted run's with --resume, else a new run's (see reserve_run)."""
    if config.resume:
        return reopen_run(out, config.resume)
    return reserve_run(out, config.run_name, default_run_name(config))


def default_run_name(config):
    return f"{config.model}-bs{config.batch_size}-lr{config.learning_rate:g}-{time.strftime('%Y%m%d-%H%M%S')}"


def _paths(out, name):
    return RunPaths(name, out / "models" / f"{name}.keras", out / "history" / f"{name}.pkl",
                    out / "history" / f"{name}.json", out / "tensorboard_logs" / name)


def reserve_run(out, requested_name, default_name):
    """Create the output folders and claim a run name that no earlier run has used.

    The claim is the creation of tensorboard_logs/<run>/ (mkdir is atomic), so two runs started in the same
    second still get different names. A name the user chose is never reused: that is an error, not a suffix.
    Failing here, before any training, is what keeps an unwritable --out from costing a whole run.
    """
    out = Path(out)
    try:
        for folder in ("models", "history", "tensorboard_logs"):
            (out / folder).mkdir(parents=True, exist_ok=True)
            if not os.access(out / folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{out / folder} is not writable")
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e}; choose a folder you can write to") from None

    for attempt in range(1, 1000):
        name = requested_name or (default_name if attempt == 1 else f"{default_name}-{attempt}")
        paths = _paths(out, name)
        taken = paths.model.exists() or paths.history.exists() or paths.record.exists()
        if not taken:
            try:
                paths.tensorboard.mkdir()
                return paths
            except FileExistsError:
                pass
        if requested_name:
            raise UserError(f"a run named {name!r} already exists in {out}; choose another --run-name")
    raise UserError(f"could not find a free run name for {default_name!r} in {out}")


def reopen_run(out, name):
    """The files of an earlier run in --out, to resume it."""
    paths = _paths(Path(out), name)
    if not paths.record.is_file():
        raise UserError(f"no run named {name!r} in {Path(out).resolve()} (no {paths.record}); "
                        "give the --out the run was started with")
    return paths


def free_stem(folder, stem, suffixes):
    """`stem`, else `stem-2`, `stem-3`...: the first for which no folder/<stem><suffix> exists yet.

    Outputs that sit next to files a user made (an evaluated model, a sweep's figure) take a suffix rather
    than replace anything.
    """
    folder = Path(folder)
    for attempt in range(1, 1000):
        candidate = stem if attempt == 1 else f"{stem}-{attempt}"
        if not any((folder / f"{candidate}{suffix}").exists() for suffix in suffixes):
            return candidate
    raise UserError(f"could not find a free name for {stem!r} in {folder}")


def write_new(path, data: bytes):
    """Create `path` with `data`; an existing file is never replaced (exclusive create)."""
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise UserError(f"{path} already exists; not overwriting it") from None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path

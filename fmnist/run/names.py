"""Run names and the files a run writes under --out, the one way to claim a free name, and the lock that lets
one process at a time use a run.

Every name the project makes up (a run's, a report's, an exported file's) is the first free one of `stem`,
`stem-2`, `stem-3`... (claim_free_name). Where two processes could race for it, the claim is an atomic create.

A run's lock is tensorboard_logs/<run>/.lock, the folder whose creation claimed the name: `fcntl.flock` on it,
held by the training (or resuming) process until it exits, and released by the kernel even after SIGKILL. It
holds the process's PID, so that a second process can say who has the run.
"""

import atexit
import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fmnist.errors import UserError
from fmnist.run.files import FILE_MODE, writable_folder

LOCK_NAME = ".lock"
# The test report's figures: history/<run>-<figure>.png after training, <model>-<figure>.png from evaluate.
REPORT_FIGURES = ("confusion", "misclassified", "feature-maps", "confused-pair")
_held_locks = {}  # lock file -> (its open descriptor, the run's paths): the runs this process uses


@dataclass(frozen=True)
class RunPaths:
    name: str
    model: Path  # models/<run>.keras, the kept model (per --keep)
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

    def figures(self):
        return [self.history.with_name(f"{self.name}-{figure}.png") for figure in REPORT_FIGURES]

    def files(self):
        return {"model": str(self.model), "history": str(self.history), "record": str(self.record),
                "tensorboard": str(self.tensorboard)}


def claim_run(config, out):
    """The run's files under `out`, locked for this process: an interrupted run's with --resume, else a new
    run's (see reserve_run)."""
    if config.resume:
        paths = reopen_run(out, config.resume)
        lock_run(paths)  # held since read_resume_point
        return paths
    return reserve_run(out, config.run_name, default_run_name(config))


def default_run_name(config):
    return f"{config.model}-bs{config.batch_size}-lr{config.learning_rate:g}-{time.strftime('%Y%m%d-%H%M%S')}"


def _paths(out, name):
    return RunPaths(name, out / "models" / f"{name}.keras", out / "history" / f"{name}.pkl",
                    out / "history" / f"{name}.json", out / "tensorboard_logs" / name)


MAX_ATTEMPTS = 999


def claim_free_name(stem, claim, where):
    """The first of `stem`, `stem-2`, `stem-3`... for which claim(name) returns true; it may create what makes
    the name taken (atomically), so that no other process gets it too. `where` names the folder in the error."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = stem if attempt == 1 else f"{stem}-{attempt}"
        if claim(name):
            return name
    raise UserError(f"could not find a free name for {stem!r} in {where}")


def reserve_run(out, requested_name, default_name):
    """Create the output folders and claim a run name that no earlier run has used.

    The claim is the creation of tensorboard_logs/<run>/ (mkdir is atomic), so two runs started in the same
    second still get different names. A name whose model, backup, history, record or figures exist is taken too,
    so that all of a run's files share its name. A name
    the user chose is never reused: that is an error, not a suffix. Failing here, before any training, is what
    keeps an unwritable --out from costing a whole run.
    """
    out = writable_folder(out, ("models", "history", "tensorboard_logs"))

    def claim(name):
        paths = _paths(out, name)
        if any(os.path.lexists(p) for p in (paths.model, paths.backup, paths.history, paths.record,
                                             *paths.figures())):
            return False
        try:
            paths.tensorboard.mkdir()
        except FileExistsError:
            return False
        return True

    if requested_name:
        if not claim(requested_name):
            raise UserError(f"a run named {requested_name!r} already exists in {out}; choose another --run-name")
        name = requested_name
    else:
        name = claim_free_name(default_name, claim, out)
    paths = _paths(out, name)
    lock_run(paths)
    return paths


def reopen_run(out, name):
    """The files of an earlier run in --out, to resume it (lock_run them before changing anything)."""
    paths = _paths(Path(out), name)
    if not paths.record.is_file():
        raise UserError(f"no run named {name!r} in {Path(out).resolve()} (no {paths.record}); "
                        "give the --out the run was started with")
    return paths


def lock_run(paths):
    """Make this process the run's only user until it exits; refuse if another process has it.

    Idempotent within a process: a sweep's runs and a resumed run lock once and keep the lock.
    """
    lock = paths.tensorboard / LOCK_NAME
    if lock in _held_locks:
        return
    for path in (paths.model, paths.backup, paths.history, paths.record, paths.tensorboard, lock):
        if path.is_symlink():  # what the run writes, locks or deletes is never reached through a link
            raise UserError(f"{path} is a symbolic link, which a run never writes through; remove it, or choose "
                            "another --run-name or --out")
    try:
        paths.tensorboard.mkdir(parents=True, exist_ok=True)  # a run from before locks, whose folder was removed
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)  # never a link's target
    except OSError as e:
        raise UserError(f"cannot lock run {paths.name!r}: {e.strerror or e} ({lock})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"run {paths.name} is being trained by process {holder}; wait for it to end, "
                        f"or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[lock] = (fd, paths)


def _release_all():
    """At exit: a run that never wrote its record (it failed before training, or a sweep stopped before it)
    gives its name back, so that a rerun with the same --run-name works. The locks go with the process."""
    for lock, (fd, paths) in list(_held_locks.items()):
        if not (paths.record.exists() or paths.model.exists() or paths.history.exists()):
            lock.unlink(missing_ok=True)
            try:
                paths.tensorboard.rmdir()  # only when empty: anything TensorBoard wrote stays
            except OSError:
                pass
        os.close(fd)
    _held_locks.clear()


atexit.register(_release_all)


def free_name(folder, stem, suffixes):
    """The first free name (claim_free_name) for which no folder/<name><suffix> exists yet, for outputs that sit
    next to files a user made (an evaluated model, exported files): they take a suffix rather than replace
    anything. It is not claimed: write them with fmnist.run.files.staged(new=True), which never replaces."""
    folder = Path(folder)
    return claim_free_name(stem, lambda name: not any(os.path.lexists(folder / f"{name}{suffix}")
                                                      for suffix in suffixes), folder)


@contextlib.contextmanager
def claimed_name(folder, stem, suffixes, claim_suffix):
    """free_name, taken atomically: folder/<name><claim_suffix> is created empty and exclusively, so two
    processes started at once get different names. The block fills it in (fmnist.run.files.write_file); if it
    leaves it empty (it failed or was stopped first), the name is given back."""
    folder = Path(folder)

    def claim(name):
        if any(os.path.lexists(folder / f"{name}{suffix}") for suffix in suffixes):
            return False
        try:
            with open(folder / f"{name}{claim_suffix}", "x"):
                return True
        except FileExistsError:
            return False
        except OSError as e:
            raise UserError(f"cannot write to {folder}: {e.strerror or e}") from None

    name = claim_free_name(stem, claim, folder)
    placeholder = folder / f"{name}{claim_suffix}"
    try:
        yield name
    finally:
        if placeholder.is_file() and not placeholder.is_symlink() and placeholder.stat().st_size == 0:
            placeholder.unlink()

"""The one safe writer: everything the project writes goes through `staged` (or `write_file`, its short form).

A file (or a folder: a SavedModel) is written under a hidden temporary name in the same folder, then renamed into
place, so whatever moment the process dies at, the path holds the previous complete file or the new one, never a
torn one. Two modes:
- replace (history, record, checkpoints): the new file replaces the old one atomically;
- new (reports, figures, exported files, cards): nothing at the path is ever replaced; if something is there by
  the time the file is complete, the write is refused in one line and the temporary is removed.

`staged_together` places several new files as one step (an exported model and its cards).

A kill mid-write can leave the temporary behind: `temporary_files(path)` finds those of one path, so that
--resume can remove them. `writable_folder` is the one check that a folder can be written, made before any work.
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from fmnist.errors import UserError, signals_deferred

TEMPORARY_MARK = ".tmp"


def _read_umask():
    # os.umask is the only way to read it, and it sets it too: put it straight back. Read once, at import,
    # before any thread could create a file in between.
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give a new file; mkstemp gives 0600
FOLDER_MODE = 0o777 & ~UMASK  # what mkdir would give; mkdtemp gives 0700


def temporary_name_parts(path):
    """(prefix, suffix) of the temporary files of `path`: `.NAME.<random>.tmp<ending>`.

    Keras and the exporters pick the format from the file's ending, so the temporary name ends like the real one.
    """
    path = Path(path)
    ending = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    return f".{path.name}.", TEMPORARY_MARK + ending


def temporary_files(path):
    """The temporary files that a killed write of `path` left beside it, and no other file's."""
    prefix, suffix = temporary_name_parts(path)
    path = Path(path)
    if not path.parent.is_dir():
        return []
    # The random part of mkstemp's names has no dot, so `a`'s pattern cannot match `a.keras`'s files.
    return [p for p in path.parent.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(suffix)
            and "." not in p.name[len(prefix):-len(suffix)] and p.name[len(prefix):-len(suffix)]]


def fsync_folder(folder):
    """Make a rename in `folder` durable: until the folder itself is on disk, a power cut can undo it."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path):
    """Delete a file or a folder this project wrote; a symlink is removed itself, never what it points to."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged(path, *, new=False, folder=False):
    """Yield a temporary path beside `path` to write (an empty file, or with `folder` an empty folder); when the
    block succeeds, it becomes `path` atomically and durably, with the mode the user's umask gives.

    `new`: never replace what is at `path` (a UserError instead). On any failure, even KeyboardInterrupt, the
    temporary is removed and `path` is left as it was.
    """
    with _temporary(path, folder) as tmp:
        yield tmp
        _place(tmp, Path(path), new=new, folder=folder)


@contextlib.contextmanager
def staged_together(paths, *, folder=None):
    """staged(new=True) for files that must appear together or not at all (an exported model and its cards; the
    one at `folder`, if any, is a folder): yields their temporaries, and when the block succeeds places them
    all, with Ctrl-C and SIGTERM held back until that is done. If one cannot be placed, those placed before it
    are removed again."""
    paths = [Path(p) for p in paths]
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(_temporary(p, p == folder)) for p in paths]
        yield temporaries
        placed = []
        with signals_deferred():
            try:
                for tmp, path in zip(temporaries, paths, strict=True):
                    _place(tmp, path, new=True, folder=path == folder)
                    placed.append(path)
            except BaseException:
                for path in placed:
                    remove(path)
                raise


@contextlib.contextmanager
def _temporary(path, folder):
    """A new empty temporary file (or folder) for `path`, beside it; removed on exit unless it was placed."""
    path = Path(path)
    prefix, suffix = temporary_name_parts(path)
    tmp = None
    try:
        # Ctrl-C or SIGTERM between creating the temporary and naming it here would leave it behind: held back
        # until `tmp` is set, they arrive inside this try, whose `finally` removes it.
        with signals_deferred():
            try:
                if folder:
                    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))
                    os.chmod(tmp, FOLDER_MODE)
                else:
                    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
                    tmp = Path(name)
                    os.close(fd)
                    os.chmod(tmp, FILE_MODE)
            except OSError as e:
                raise UserError(f"cannot write {path}: {e.strerror or e}") from None
        yield tmp
    finally:
        if tmp is not None and os.path.lexists(tmp):
            remove(tmp)


def _place(tmp, path, *, new, folder):
    """Rename the finished temporary `tmp` to `path`, durably: replacing what is there, or with `new` never."""
    if not new and not folder and path.is_file():
        os.chmod(tmp, path.stat().st_mode & 0o777)  # a file the user made private stays private
    if not folder:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the content on disk before the rename, so a power cut leaves no empty file
    if not new:
        os.replace(tmp, path)
    else:
        try:
            if folder:  # a rename would replace an empty folder made in the instant since this look
                if os.path.lexists(path):
                    raise FileExistsError(path)
                os.rename(tmp, path)
            else:
                os.link(tmp, path)  # fails if anything is at `path`, even a dangling symlink
                tmp.unlink()
        except FileExistsError:
            raise UserError(f"{path} already exists; not overwriting it") from None
    fsync_folder(path.parent)


def write_file(path, data: bytes, *, new=False):
    """Write `data` to `path` through `staged`: replacing what is there, or with `new` never."""
    with staged(path, new=new) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def writable_folder(folder, subfolders=()):
    """`folder` (an --out) as a Path, created with its `subfolders` and checked writable, so that a folder that
    cannot be written is a UserError before any work is done."""
    folder = Path(folder)
    try:
        for sub in (folder, *(folder / s for s in subfolders)):
            sub.mkdir(parents=True, exist_ok=True)
            if not os.access(sub, os.W_OK | os.X_OK):
                raise PermissionError(f"{sub} is not writable")
    except OSError as e:
        raise UserError(f"cannot write to --out {folder}: {e.strerror or e}; choose a folder you can write to") \
            from None
    return folder

"""One way to write a file that survives a crash: into a temporary file in the same folder, then renamed into place.

Whatever moment the process dies at, the path holds the previous complete file or the new one, never a torn one.
A kill mid-write can leave the hidden temporary file behind: `temporary_files(path)` finds those of one file.
"""

import contextlib
import os
import tempfile
from pathlib import Path

TEMPORARY_MARK = ".tmp"


def _read_umask():
    # os.umask is the only way to read it, and it sets it too: put it straight back. Read once, at import,
    # before any thread could create a file in between.
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() would give a new file; mkstemp gives 0600


def temporary_name_parts(path):
    """(prefix, suffix) of the temporary files of `path`: `.NAME.<random>.tmp<ending>`.

    Keras picks the format from the file's ending, so the temporary name ends like the real one.
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


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path beside `path` to write; on success it becomes `path` atomically and durably.

    The file gets the mode the user's umask gives a new file. On any failure, even KeyboardInterrupt, the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    prefix, suffix = temporary_name_parts(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        os.chmod(tmp, FILE_MODE)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # the content on disk before the rename, so a power cut cannot leave an empty file
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path, data: bytes):
    """Write `data` to `path` through `replacing`."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)

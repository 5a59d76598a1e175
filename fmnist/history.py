"""History files: the Keras History.history pickle and the JSON run record. Written atomically, read safely."""

import io
import json
import math
import os
import pickle
import tempfile
from pathlib import Path

from fmnist import UserError

# Plain data only: what a Keras History.history dict can hold, in any Keras version.
_SAFE_GLOBALS = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "str"), ("builtins", "int"), ("builtins", "float"), ("builtins", "bool"),
    ("builtins", "complex"), ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # NumPy arrays, protocol 5
}


class HistoryError(UserError):
    """A history file that cannot be read, or is not a history."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Loading a pickle runs whatever callables it names; this one only admits the plain data types above."""

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return self._latin1_encode
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise HistoryError(f"refusing to load {self.source}: it contains {module}.{name}, which is not plain data")

    def _latin1_encode(self, text, encoding="latin1"):
        """Protocols 0-2 store bytes (a NumPy array's data) as _codecs.encode(text, "latin1"). The real
        _codecs.encode takes any codec, so only this one use is let through."""
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise HistoryError(f"refusing to load {self.source}: it contains _codecs.encode with codec {encoding!r}")
        return text.encode("latin1")


def write_atomically(path, data: bytes):
    """Write to a temporary file in the same folder, then rename it into place.

    A crash or SIGKILL leaves either the old file or the complete new one, never a torn one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plain_history(history):
    """Keras's History.history with every value a Python float, so the pickle needs no NumPy to read."""
    return {key: [float(v) for v in values] for key, values in history.items()}


def write_history(path, history):
    write_atomically(path, pickle.dumps(plain_history(history), protocol=4))


def write_record(path, record):
    write_atomically(path, (json.dumps(_json_safe(record), indent=2, allow_nan=False) + "\n").encode())


def _json_safe(value):
    """JSON has no NaN or infinity: a diverged loss is recorded as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_history(path):
    """The {metric: [one value per epoch]} dict from a history pickle or a JSON run record."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HistoryError(f"{path}: file not found") from None
    except OSError as e:
        raise HistoryError(f"{path}: cannot read ({e.strerror or e})") from None
    if not raw:
        raise HistoryError(f"{path}: the file is empty")

    if raw[:1] in (b"{", b"[") or path.suffix == ".json":
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise HistoryError(f"{path}: not valid JSON ({e})") from None
        if isinstance(data, dict) and "history" in data:
            data = data["history"]
    else:
        unpickler = _PlainDataUnpickler(io.BytesIO(raw))
        unpickler.source = str(path)
        try:
            data = unpickler.load()
        except HistoryError:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise almost anything
            raise HistoryError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    return _check_history(data, path)


def _check_history(data, path):
    if not isinstance(data, dict) or not data:
        raise HistoryError(f"{path}: not a Keras history (expected a dict of metric name -> list of values, "
                           f"got {type(data).__name__})")
    history = {}
    for key, values in data.items():
        if not isinstance(key, str) or not hasattr(values, "__len__") or isinstance(values, (str, bytes, dict)):
            raise HistoryError(f"{path}: not a Keras history (entry {key!r} is not a list of numbers)")
        try:
            history[key] = [float("nan") if v is None else float(v) for v in values]
        except (TypeError, ValueError):
            raise HistoryError(f"{path}: not a Keras history (entry {key!r} holds non-numbers)") from None
    return history


def make_record(about, *, status, history, train_seconds, test=None, figures=None):
    """The JSON run record: `about` the run (its name, model, settings, precision, data, files, devices), then
    how far it got, how long it took and how well it did.

    `test` is the evaluation report (metrics, per-class table, most confused pairs, confusion matrix) and
    `figures` maps each report figure to its PNG.
    """
    return {
        **about,
        "status": status,
        "epochs_run": len(history.get("loss", [])),
        "train_seconds": round(train_seconds, 2),
        "test": test,
        "figures": figures or {},
        "history": plain_history(history),
    }

"""History files: the Keras History.history pickle and the JSON run record. Written atomically, read safely."""

import json
import math
import pickle
from pathlib import Path

from fmnist.errors import UserError, error_text
from fmnist.run.files import write_file
from fmnist.run.safe_pickle import MAX_VALUES, UnsafePickleError, load_plain_pickle

MAX_FILE_BYTES = 64 * 2**20  # a history of a million values fits; bigger is not a history, and is not read


class HistoryError(UserError):
    """A history file that cannot be read, or is not a history."""


def plain_history(history):
    """Keras's History.history with every value a Python float, so the pickle needs no NumPy to read."""
    return {key: [float(v) for v in values] for key, values in history.items()}


def write_history(path, history):
    write_file(path, pickle.dumps(plain_history(history), protocol=4))


def write_record(path, record):
    write_file(path, (json.dumps(_json_safe(record), indent=2, allow_nan=False) + "\n").encode())


def _json_safe(value):
    """JSON has no NaN or infinity: a diverged loss is recorded as null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_capped(path):
    """The bytes of `path`; a file over MAX_FILE_BYTES is refused (ValueError) without being read whole."""
    with open(path, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"over {MAX_FILE_BYTES // 2**20} MB, too big for a history or a run record")
    return raw


def read_history(path):
    """The {metric: [one value per epoch]} dict from a history pickle or a JSON run record."""
    path = Path(path)
    try:
        raw = read_capped(path)
    except FileNotFoundError:
        raise HistoryError(f"{path}: file not found") from None
    except OSError as e:
        raise HistoryError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise HistoryError(f"{path}: {e}") from None
    if not raw:
        raise HistoryError(f"{path}: the file is empty")

    if raw[:1] in (b"{", b"[") or path.suffix == ".json":
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise HistoryError(f"{path}: not valid JSON ({str(e)[:200] or type(e).__name__})") from None
        if isinstance(data, dict) and "history" in data:
            data = data["history"]
    else:
        try:
            data = load_plain_pickle(raw)
        except UnsafePickleError as e:
            raise HistoryError(f"refusing to load {path}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise almost anything
            raise HistoryError(f"{path}: not a readable pickle ({error_text(e)})") from None
    return check_history(data, path)


def check_history(data, path):
    if not isinstance(data, dict) or not data:
        raise HistoryError(f"{path}: not a Keras history (expected a dict of metric name -> list of values, "
                           f"got {type(data).__name__})")
    # Keys count too: two million empty metrics are as costly as two million values.
    if len(data) + sum(len(v) if isinstance(v, (list, tuple)) else 1 for v in data.values()) > MAX_VALUES:
        raise HistoryError(f"{path}: more than {MAX_VALUES:,} metrics and values, more than a history can hold")
    history = {}
    for key, values in data.items():
        if not isinstance(key, str) or not isinstance(values, (list, tuple)):
            entry = f"entry {key!r:.100}" if isinstance(key, str) else f"a key of type {type(key).__name__}"
            raise HistoryError(f"{path}: not a Keras history ({entry} is not a list of numbers)")
        try:
            history[key] = [float("nan") if v is None else _number(v) for v in values]
        except (TypeError, ValueError, OverflowError):
            raise HistoryError(f"{path}: not a Keras history (entry {key!r:.100} holds non-numbers)") from None
    return history


def _number(value):
    """A history value: only numbers (float() would also take strings, and anything with __float__)."""
    if not isinstance(value, (int, float)):
        raise TypeError(type(value).__name__)
    return float(value)


def make_record(run_facts, *, status, history, train_seconds, test=None, figures=None):
    """The JSON run record: the `run_facts` (its name, model, settings, precision, data, files, devices), then
    how far it got, how long it took and how well it did.

    `test` is the evaluation report (metrics, per-class table, most confused pairs, confusion matrix) and
    `figures` maps each report figure to its PNG.
    """
    return {
        **run_facts,
        "status": status,
        "epochs_run": len(history.get("loss", [])),
        "train_seconds": round(train_seconds, 2),
        "test": test,
        "figures": figures or {},
        "history": plain_history(history),
    }

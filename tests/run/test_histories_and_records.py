"""fmnist/run/records.py and safe_pickle.py: the JSON run record, and history pickles that load as plain numbers
whatever Keras wrote them, while a pickle that would run code or exhaust the machine is refused."""

import json
import pickle

import pytest
from conftest import assert_clean_error, run_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pickle_attacks import ATTACKS, write_attack

from fmnist.run.records import HistoryError, read_history


@pytest.mark.slow
def test_run_record_is_valid_json_with_the_history_and_its_provenance(tiny_run):
    out, _, record = tiny_run
    assert record["history"] == pickle.loads((out / "history" / "tiny.pkl").read_bytes())
    json.dumps(record, allow_nan=False)  # strict JSON: no NaN or Infinity
    provenance = record["provenance"]
    assert provenance["command"] == f"python fashion_mnist.py --limit 1000 --epochs 1 --out {out} --run-name tiny"
    assert provenance["packages"]["tensorflow"] and provenance["packages"]["keras"] and provenance["python"]
    assert len(provenance["commit"].split()[0]) == 40 and isinstance(provenance["cpu"]["flags"], list)
    assert provenance["fast_ops"] and record["precision"] in ("float32", "mixed_bfloat16")


class _Calls:
    """Pickles as a call of `function(*args)`: what a malicious "history" would contain."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _payloads(marker):
    import builtins
    import os
    import subprocess

    return {
        "posix.system": _Calls(os.system, f"touch {marker}"),  # os.system pickles under its real module name
        "subprocess.Popen": _Calls(subprocess.Popen, ["touch", str(marker)]),
        "subprocess.check_call": _Calls(subprocess.check_call, ["touch", str(marker)]),
        "builtins.eval": _Calls(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "builtins.exec": _Calls(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("callable_name", ["posix.system", "subprocess.Popen", "subprocess.check_call",
                                           "builtins.eval", "builtins.exec"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, callable_name, protocol):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    # Hidden inside a history that looks right, where a careless loader would call it.
    evil.write_bytes(pickle.dumps({"loss": [1.0, 0.5], "accuracy": _payloads(marker)[callable_name]}, protocol))
    # Protocols 0-2 write Python 2 module names (commands.Popen, __builtin__.eval): refused all the same.
    module, name = callable_name.split(".")
    module = {"subprocess": "(subprocess|commands)", "builtins": "(builtins|__builtin__)"}.get(module, module)
    with pytest.raises(HistoryError, match=f"refusing to load {evil}: it contains {module}.{name}, which is not plain"):
        read_history(evil)
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("callable_name", ["posix.system", "subprocess.Popen", "builtins.eval", "builtins.exec"])
def test_graph_history_refuses_a_pickle_that_would_run_code(tmp_path, callable_name):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_payloads(marker)[callable_name]))
    assert_clean_error(run_script("graph_history.py", evil), 1, "refusing to load", callable_name)
    assert not marker.exists() and not (tmp_path / "evil.png").exists()


def test_a_codec_other_than_latin1_is_refused(tmp_path):
    """Protocols 0-2 need _codecs.encode for bytes; only its latin1 use is let through."""
    import _codecs

    evil = tmp_path / "codec.pkl"
    evil.write_bytes(pickle.dumps({"loss": _Calls(_codecs.encode, "eA==", "base64")}, protocol=2))
    with pytest.raises(HistoryError, match="refusing to load .*_codecs.encode with codec 'base64'"):
        read_history(evil)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_histories_load_with_every_protocol(tmp_path, protocol):
    """What old Keras versions pickled: NumPy scalars and arrays of every numeric kind, OrderedDicts, `acc`."""
    import collections

    import numpy as np

    path = tmp_path / "numpy.pkl"
    history = collections.OrderedDict([
        ("loss", np.array([1.0, 0.5], dtype=np.float32)),
        ("val_loss", [np.float64(0.9), np.float32(0.8)]),
        ("acc", (0.5, 0.75)),
        ("val_acc", np.array([0.25, 0.5], dtype=">f8")),
        ("lr", [np.array(0.001), np.float16(0.5)]),
        ("epoch", np.arange(2, dtype=np.int64)),
        ("steps", np.array([3, 4], dtype=np.uint8)),
        ("improved", np.array([True, False])),
        ("empty", np.array([], dtype=np.float32)),
    ])
    path.write_bytes(pickle.dumps(history, protocol))
    assert read_history(path) == {
        "loss": [1.0, 0.5], "val_loss": [0.9, pytest.approx(0.8)], "acc": [0.5, 0.75], "val_acc": [0.25, 0.5],
        "lr": [0.001, 0.5], "epoch": [0.0, 1.0], "steps": [3.0, 4.0], "improved": [1.0, 0.0], "empty": []}


def test_a_long_history_still_loads(tmp_path):
    import numpy as np

    path = tmp_path / "long.pkl"
    path.write_bytes(pickle.dumps({f"metric{i}": np.linspace(0, 1, 2000) for i in range(50)}))
    assert len(read_history(path)["metric49"]) == 2000


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_pickle_is_refused_quickly_without_a_crash(tmp_path, attack):
    """Each attack class on the loader: a segfault, a write out of bounds, gigabytes from a few bytes, a history
    emptied by BUILD. The subprocess shows a crash as one; the timing runs here once the file is known safe."""
    import time

    evil = write_attack(attack, tmp_path / "evil.pkl")
    proc = run_script("graph_history.py", evil, timeout=60)
    assert_clean_error(proc, 1, str(evil))
    assert any(words in proc.stderr for words in ("refusing to load", "too big for a history")), proc.stderr
    assert not (tmp_path / "evil.png").exists()
    started = time.perf_counter()
    with pytest.raises(HistoryError):
        read_history(evil)
    assert time.perf_counter() - started < 1.5  # a second, with room for a machine busy with other tests


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), position=st.integers(0, 10**6),
       value=st.integers(0, 255))
def test_fuzz_a_changed_byte_in_a_numpy_history_loads_plain_data_or_is_refused(protocol, position, value):
    """Whatever one changed byte does to a NumPy history, the loader returns plain numbers or HistoryError."""
    import tempfile
    from pathlib import Path

    import numpy as np

    raw = bytearray(pickle.dumps({"loss": np.array([1.0, 0.5]), "acc": [np.float32(0.5)]}, protocol))
    raw[position % len(raw)] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.pkl"
        path.write_bytes(bytes(raw))
        try:
            history = read_history(path)
        except HistoryError:
            return
    assert all(type(key) is str and all(type(v) is float for v in values) for key, values in history.items())


def test_a_json_history_of_a_million_empty_metrics_is_refused(tmp_path):
    """Keys count as values do: two million empty lists cost as much memory as two million numbers."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({f"m{i}": [] for i in range(1_000_001)}))
    with pytest.raises(HistoryError, match="more than 1,000,000 metrics and values"):
        read_history(path)

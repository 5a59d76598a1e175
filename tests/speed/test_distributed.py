"""--strategy: two real worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy), mirrored on one CPU, and
the errors of a bad cluster."""

import json
import pickle
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, _script_env, assert_clean_error, run_script

pytestmark = pytest.mark.slow  # every test here trains or starts processes

TINY = ("--model", "cnn", "--epochs", 1, "--limit", 600, "--batch-size", 32)


def free_ports(count):
    """Ports the OS says are free on loopback (bound at once, so they differ; released just before use)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


# fashion_mnist.py, with a callback that writes the SHA-256 of the final weights to the file in argv[1].
WORKER = """
import hashlib, sys
import keras
import fashion_mnist
from fmnist.errors import run_guarded

class WeightsDigest(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        weights = b"".join(w.tobytes() for w in self.model.get_weights())
        with open(sys.argv[1], "w") as f:
            f.write(hashlib.sha256(weights).hexdigest())

run_guarded(lambda: fashion_mnist.main(sys.argv[2:], extra_callbacks=[WeightsDigest()]))
"""


def start_worker(tmp_path, ports, index, *args):
    """One worker of the cluster, with its own TF_CONFIG, temporary folder, weights digest file and log."""
    scratch = tmp_path / f"tmp{index}"
    scratch.mkdir()
    env = dict(_script_env(), TF_CONFIG=tf_config(ports, index), TMPDIR=str(scratch))
    log = open(tmp_path / f"worker{index}.log", "w")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / f"weights{index}.sha256"),
                             *map(str, args)], stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    proc.log = log
    return proc


def wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    try:
        return [proc.wait(max(1, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.log.close()


def test_two_workers_on_loopback_train_alike_and_only_the_chief_writes(tmp_path):
    out = tmp_path / "out"
    ports = free_ports(2)
    procs = [start_worker(tmp_path, ports, i, *TINY, "--strategy", "multiworker", "--out", out,
                          "--run-name", "mw", "--worker-timeout", 120) for i in range(2)]
    codes = wait_all(procs, timeout=300)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)

    # Both trained as 2 replicas of a global batch of 64, and ended with the same weights.
    for log in logs:
        assert "Strategy: multiworker" in log and "2 replica(s) x batch 32 = global batch 64" in log
    digests = [(tmp_path / f"weights{i}.sha256").read_text().strip() for i in range(2)]
    assert len(digests[0]) == 64 and digests[0] == digests[1]

    # Only the chief wrote into --out; the other worker's temporary folder is gone.
    assert sorted(p.name for p in (out / "history").glob("*.pkl")) == ["mw.pkl"]
    assert sorted(p.name for p in (out / "models").iterdir()) == ["mw.keras"]
    assert sorted(p.name for p in (out / "tensorboard_logs").iterdir()) == ["mw"]
    assert list((tmp_path / "tmp1").iterdir()) == []
    history = pickle.loads((out / "history" / "mw.pkl").read_bytes())
    assert set(history) == {"loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy"}
    assert all(len(values) == 1 for values in history.values())
    assert 0 < history["val_loss"][0] < 2.5 and history["val_accuracy"][0] > 0.3  # it learned something
    record = json.loads((out / "history" / "mw.json").read_text())
    assert (record["status"], record["strategy"], record["replicas"], record["global_batch_size"]) == (
        "completed", "multiworker", 2, 64)
    assert record["test"]["accuracy"] > 0.3


def test_mirrored_on_one_cpu_trains_one_epoch(tmp_path):
    proc = run_script("fashion_mnist.py", *TINY, "--strategy", "mirrored", "--scale-lr", "--out", tmp_path,
                      "--run-name", "mirrored")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Strategy: mirrored; 1 replica(s) x batch 32 = global batch 32; learning rate 0.001" in proc.stdout
    record = json.loads((tmp_path / "history" / "mirrored.json").read_text())
    assert (record["strategy"], record["replicas"], record["global_batch_size"]) == ("mirrored", 1, 32)
    assert record["epochs_run"] == 1 and record["test"]["accuracy"] > 0.3


def test_multiworker_needs_a_well_formed_tf_config(tmp_path):
    base = (*TINY, "--strategy", "multiworker", "--out", tmp_path)
    env = _script_env()
    for tf_config_value, fragment in ((None, "needs the cluster in TF_CONFIG"),
                                      ("{not json", "TF_CONFIG is malformed"),
                                      ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "missing 'task'"),
                                      ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", '
                                       '"index": 3}}', "not in the cluster")):
        env.pop("TF_CONFIG", None)
        if tf_config_value is not None:
            env["TF_CONFIG"] = tf_config_value
        proc = subprocess.run([sys.executable, str(ROOT / "fashion_mnist.py"), *map(str, base)],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert_clean_error(proc, 1, fragment)
    assert not any((tmp_path / "history").glob("*"))


def test_a_worker_whose_peer_never_comes_gives_up(tmp_path):
    ports = free_ports(2)
    started = time.monotonic()
    proc = start_worker(tmp_path, ports, 1, *TINY, "--strategy", "multiworker", "--out", tmp_path / "out",
                        "--worker-timeout", 5)
    assert wait_all([proc], timeout=120) == [1]
    last_words = "error: not every worker in TF_CONFIG joined within 5 s: start them all, check their addresses"
    for _ in range(50):  # the watchdog's child process prints them as the worker exits, so it may lag a little
        log = (tmp_path / "worker1.log").read_text()
        if last_words in log:
            break
        time.sleep(0.1)
    assert "as worker 1 of a 2-task cluster: waiting up to 5 s (--worker-timeout)" in log
    assert last_words in log
    assert "Traceback" not in log and "Thread 0x" not in log  # no stack dump
    assert time.monotonic() - started < 90
    assert not (tmp_path / "out").exists()  # a worker that is not the chief never writes into --out

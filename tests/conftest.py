"""Helpers and session fixtures shared by the tests of every folder (each test file imports them with
`from conftest import ...`)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env.pop("FASHION_MNIST_DIR", None)
    return env


def run_script(script, *args, timeout=600):
    """Run one of the entry scripts as a user would, and return the finished process."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_script_env(), cwd=ROOT)


def run_code(code, *args, timeout=600):
    """Run Python `code` (`python -c`) from the project's folder with `args` in sys.argv[1:], as run_script does."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_script_env(), cwd=ROOT)


def start_script(script, *args, log):
    """Start an entry script in the background (to signal it), with stdout and stderr going to the file `log`."""
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], stdout=output,
                                stderr=subprocess.STDOUT, text=True, env=_script_env(), cwd=ROOT)


def assert_clean_error(proc, code, *fragments):
    """A refused input: the given exit code, a one-line `error:` on stderr (argparse adds its usage), no traceback."""
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in error_lines[0]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def read_tensors(logdir):
    """{tag: [(step, value as a NumPy array)]} and {tag: plugin name} from the event files of one folder."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    values = {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
              for tag in tags}
    return values, {tag: accumulator.SummaryMetadata(tag) for tag in tags}


# A few seconds an epoch; a small validation set keeps the epoch ends quick too.
SMALL = ("--limit", 1000, "--val-fraction", 0.02, "--epochs", 2)


def wait_for_epochs(proc, record, epochs, log, timeout=300):
    """Poll the run record (rewritten atomically after every epoch) until it holds `epochs` completed epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        if record.exists() and json.loads(record.read_text())["epochs_run"] >= epochs:  # never torn: no retry
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no record of {epochs} epochs after {timeout} s")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real end-to-end training run (1 epoch on 1,000 images), shared by the tests that inspect its output."""
    out = tmp_path_factory.mktemp("out")
    proc = run_script("fashion_mnist.py", "--limit", 1000, "--epochs", 1, "--out", out, "--run-name", "tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "history" / "tiny.json").read_text())
    return out, proc, record


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory):
    """A `fast` model trained for real but briefly (2 epochs on 6,000 images, about 85 % test accuracy): enough
    for exported files and heat maps to be about something. Shared by the export and explain tests."""
    out = tmp_path_factory.mktemp("fast")
    proc = run_script("fashion_mnist.py", "--model", "fast", "--epochs", 2, "--limit", 6000, "--out", out,
                      "--run-name", "fast")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "history" / "fast.json").read_text())
    return out / "models" / "fast.keras", record

"""fmnist/quiet.py: no CUDA error lines on a machine without a GPU, and every other line kept."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from fmnist.quiet import filtered_stderr, has_gpu_device, is_noise

CUINIT = ("E0000 00:00:1796219312.008574 8229 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          "Failed call to cuInit: UNKNOWN ERROR (303)")


def test_the_cuda_lines_are_noise_and_real_errors_are_not():
    assert is_noise(CUINIT + "\n", min_log_level=0)
    assert is_noise("I0000 00:00:1 8229 cudart_stub.cc:31] Could not find cuda drivers on your machine\n", 0)
    assert is_noise("I0000 00:00:1 8229 port.cc:153] oneDNN custom operations are on.\n", min_log_level=2)
    assert not is_noise("I0000 00:00:1 8229 port.cc:153] oneDNN custom operations are on.\n", min_log_level=0)
    assert not is_noise("E0000 00:00:1 8229 some_kernel.cc:12] Out of memory\n", min_log_level=2)
    assert not is_noise("error: data/fashion: file not found\n", min_log_level=2)


def test_filtered_stderr_drops_only_the_noise_written_to_file_descriptor_2(capfd):
    with filtered_stderr():
        os.write(2, (CUINIT + "\nkept line\n").encode())  # as TensorFlow's C++ code writes, below sys.stderr
        print("kept from Python", file=sys.stderr)
    err = capfd.readouterr().err
    assert "cuInit" not in err and "kept line" in err and "kept from Python" in err


@pytest.mark.slow
@pytest.mark.skipif(has_gpu_device(), reason="a machine with a GPU shows TensorFlow's CUDA lines, as it should")
def test_starting_tensorflow_prints_no_cuda_line_on_a_machine_without_a_gpu():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
    code = "import fashion_mnist, keras, tensorflow as tf; print(tf.config.list_physical_devices())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CPU" in proc.stdout
    assert "cuda" not in (proc.stdout + proc.stderr).lower(), proc.stderr

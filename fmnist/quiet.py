"""TensorFlow without its CUDA noise on a machine that has no NVIDIA GPU.

TensorFlow's pip wheel looks for CUDA at import and again when it first lists its devices, and on a machine
without a GPU prints `Could not find cuda drivers` and `E0000 ... failed call to cuInit: ... CUDA error`. They
come before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so that setting cannot hide them, and they look like failure.
`hide_cuda_noise()` filters those lines out of stderr while TensorFlow starts, and only where no NVIDIA device
node exists: on a machine with a GPU every line, a real CUDA error included, still reaches the user.
"""

import contextlib
import glob
import importlib.abc
import importlib.util
import os
import sys
import tempfile

# What TensorFlow prints about CUDA when there is no GPU (and absl's preamble to those early lines).
CUDA_NOISE = ("cudart_stub.cc", "cuda_platform.cc", "cuda_executor.cc", "cuda_dnn.cc", "cuda_fft.cc",
              "cuda_blas.cc", "failed call to cuInit", "All log messages before absl::InitializeLog()")
GPU_DEVICE_NODES = ("/dev/nvidia[0-9]*", "/dev/dxg")  # Linux, and WSL2's GPU


def has_gpu_device():
    return any(glob.glob(pattern) for pattern in GPU_DEVICE_NODES)


def is_noise(line, min_log_level=None):
    """A line TensorFlow prints at start-up that says nothing on a machine without a GPU: one about CUDA, or an
    info line (`I0000 ...`) where TF_CPP_MIN_LOG_LEVEL asks for warnings and above."""
    level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0) if min_log_level is None else min_log_level
    return any(noise in line for noise in CUDA_NOISE) or (level >= 1 and line.startswith("I0000 "))


@contextlib.contextmanager
def filtered_stderr():
    """Send file descriptor 2 (where TensorFlow's C++ code writes) to a temporary file, then replay it without
    the noise. Synchronous, so nothing written in the block can be lost or reordered after it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not is_noise(line)))
            sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `tensorflow` (whoever asks for it first: Keras, or our own code) inside filtered_stderr(), and
    lists its devices there too, since that is when cuInit fails."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finder does the work from here on
        spec = importlib.util.find_spec(name)
        if spec is not None:
            self.loader = spec.loader
            spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices()


def hide_cuda_noise():
    """Call before anything imports TensorFlow; does nothing on a machine with an NVIDIA device, or once
    TensorFlow is already imported."""
    if has_gpu_device() or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())

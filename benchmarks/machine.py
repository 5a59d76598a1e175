"""What the benchmarks ran on: printed at the top of every benchmark's output."""

import os
import platform
from pathlib import Path


def _cpuinfo_values(field):
    """Every value of `field` in /proc/cpuinfo (one per core); empty where there is no such file."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    return [line.split(":", 1)[1].strip() for line in lines if line.split(":")[0].strip() == field]


def cpu_model():
    return next(iter(_cpuinfo_values("model name")), platform.processor() or "unknown CPU")


def cpu_mhz():
    """The highest clock /proc/cpuinfo reports, or None."""
    clocks = _cpuinfo_values("cpu MHz")
    return max(map(float, clocks)) if clocks else None


def describe_machine():
    import keras
    import numpy as np
    import tensorflow as tf

    from fmnist.training import cpu_supports_bf16

    gpus = tf.config.list_physical_devices("GPU")
    return (f"Machine: {cpu_model()}, {os.cpu_count()} cores, bf16 {'yes' if cpu_supports_bf16() else 'no'}, "
            f"{len(gpus)} GPU(s)\n"
            f"Versions: Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"NumPy {np.__version__}")

"""What the benchmarks ran on: printed at the top of every benchmark's output."""

import os
import platform
from pathlib import Path


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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

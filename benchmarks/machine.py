"""What the benchmarks ran on: printed at the top of every benchmark's output, with the CPU's peak arithmetic."""

import os
import platform

from fmnist.quiet import hide_cuda_noise
from fmnist.speed.cpu import cpu_mhz, cpu_model, flop_per_cycle, isa_flags

hide_cuda_noise()  # every benchmark imports this module before TensorFlow: no CUDA lines without a GPU


def peak_flops(policy):
    """The CPU's peak FLOP/s for a Keras dtype policy ("float32", "mixed_bfloat16"...), or None if unknown."""
    mhz = cpu_mhz()
    if not mhz:
        return None
    fp32, bf16 = flop_per_cycle()
    return os.cpu_count() * mhz * 1e6 * (bf16 if "bfloat16" in policy else fp32)


def describe_machine():
    import keras
    import numpy as np
    import tensorflow as tf

    isa = isa_flags()
    fp32, bf16 = flop_per_cycle(isa)
    gpus = tf.config.list_physical_devices("GPU")
    return (f"Machine: {cpu_model()}, {os.cpu_count()} cores, {' '.join(isa) or 'no AVX2'}; peak per core and "
            f"cycle: {fp32} float32 FLOP, {bf16} bfloat16 FLOP; {len(gpus)} GPU(s)\n"
            f"Versions: Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
            f"NumPy {np.__version__}")

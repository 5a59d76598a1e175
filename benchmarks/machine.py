"""What the benchmarks ran on: printed at the top of every benchmark's output, with the CPU's peak arithmetic."""

import os
import platform
from pathlib import Path

# The instruction sets that decide how fast a CPU trains and serves (VNNI and AMX-INT8: int8 inference), newest last.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


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


def isa_flags():
    """The ISA_FLAGS this CPU has."""
    flags = set(next(iter(_cpuinfo_values("flags")), "").split())
    return [flag for flag in ISA_FLAGS if flag in flags]


def flop_per_cycle(isa, vendor=None, family=None):
    """(float32, bfloat16) FLOP per cycle and core: two FMA units, each a multiply and an add per lane.

    256-bit units (AVX2, and AMD Zen 4, which runs AVX-512 through them in two halves): 2 x 8 x 2 = 32 float32.
    512-bit units (Intel AVX-512, AMD Zen 5, family 26): 64. AVX512-BF16's dot product does twice the float32 work
    per instruction; AMX's tiles about 1,024 bf16 FLOP a cycle. Without bf16 instructions bf16 runs at float32 speed.
    """
    vendor = vendor or next(iter(_cpuinfo_values("vendor_id")), "")
    family = family if family is not None else int(next(iter(_cpuinfo_values("cpu family")), "0"))
    if "fma" not in isa:
        fp32 = 8  # SSE: one 128-bit multiply and one add a cycle
    elif "avx512f" in isa and (vendor != "AuthenticAMD" or family >= 26):
        fp32 = 64
    else:
        fp32 = 32
    bf16 = 1024 if "amx_bf16" in isa else 2 * fp32 if "avx512_bf16" in isa else fp32
    return fp32, bf16


def peak_flops(policy):
    """The CPU's peak FLOP/s for a Keras dtype policy ("float32", "mixed_bfloat16"...), or None if unknown."""
    mhz = cpu_mhz()
    if not mhz:
        return None
    fp32, bf16 = flop_per_cycle(isa_flags())
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

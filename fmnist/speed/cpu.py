"""What the CPU can do, from /proc/cpuinfo: its instruction sets and peak arithmetic, and so whether bf16 pays."""

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


def flop_per_cycle(isa=None, vendor=None, family=None):
    """(float32, bfloat16) FLOP per cycle and core: two FMA units, each a multiply and an add per lane.

    256-bit units (AVX2, and AMD Zen 4, which runs AVX-512 through them in two halves): 2 x 8 x 2 = 32 float32.
    512-bit units (Intel AVX-512, AMD Zen 5, family 26): 64. AMX's tiles do about 1,024 bf16 FLOP a cycle. AMD's
    AVX512-BF16 dot product does twice the float32 work; Intel's, without AMX, measured slower than float32
    (oneDNN's kernels on a 5th-generation Xeon), so it counts as float32 there, as bf16 does without bf16 instructions.
    """
    isa = isa_flags() if isa is None else isa
    vendor = vendor or next(iter(_cpuinfo_values("vendor_id")), "")
    family = family if family is not None else int(next(iter(_cpuinfo_values("cpu family")), "0"))
    if "fma" not in isa:
        fp32 = 8  # SSE: one 128-bit multiply and one add a cycle
    elif "avx512f" in isa and (vendor != "AuthenticAMD" or family >= 26):
        fp32 = 64
    else:
        fp32 = 32
    if "amx_bf16" in isa:
        bf16 = 1024
    elif "avx512_bf16" in isa and vendor == "AuthenticAMD":
        bf16 = 2 * fp32
    else:
        bf16 = fp32
    return fp32, bf16


def bf16_pays():
    """True where bfloat16 arithmetic is faster than float32 on this CPU (AMX, or AMD's AVX512-BF16)."""
    fp32, bf16 = flop_per_cycle()
    return bf16 > fp32

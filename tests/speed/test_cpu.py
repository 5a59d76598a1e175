"""fmnist/speed/cpu.py: the peak arithmetic read from the instruction set, and `--precision auto` following it."""

import pytest


def test_peak_arithmetic_follows_the_instruction_set():
    from fmnist.speed.cpu import flop_per_cycle

    assert flop_per_cycle(["avx2", "fma"], "GenuineIntel", 6) == (32, 32)  # a laptop: no bf16 instructions
    assert flop_per_cycle(["avx2", "fma", "avx512f"], "GenuineIntel", 6) == (64, 64)
    assert flop_per_cycle(["avx2", "fma", "avx512f", "avx512_bf16"], "AuthenticAMD", 25) == (32, 64)  # Zen 4
    assert flop_per_cycle(["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"], "GenuineIntel", 6) == (64, 1024)
    # Intel without AMX: bf16 measured slower than float32 (oneDNN on a 5th-generation Xeon), so no bf16 gain
    assert flop_per_cycle(["avx2", "fma", "avx512f", "avx512_bf16"], "GenuineIntel", 6) == (64, 64)


@pytest.mark.parametrize("vendor, flags, policy", [
    ("AuthenticAMD", "avx2 fma avx512f avx512_bf16", "mixed_bfloat16"),  # Zen 4
    ("GenuineIntel", "avx2 fma avx512f avx512_bf16", "float32"),  # a Xeon without AMX: bf16 was slower
    ("GenuineIntel", "avx2 fma avx512f avx512_bf16 amx_bf16", "mixed_bfloat16"),
    ("GenuineIntel", "avx2 fma", "float32"),
])
def test_auto_precision_takes_bf16_only_where_the_cpu_computes_it_faster(monkeypatch, vendor, flags, policy):
    import tensorflow as tf

    import fmnist.speed.cpu
    from fmnist.training import choose_precision

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("on a GPU, `auto` follows the GPU")

    cpuinfo = {"vendor_id": [vendor], "cpu family": ["25" if vendor == "AuthenticAMD" else "6"], "flags": [flags]}
    monkeypatch.setattr(fmnist.speed.cpu, "_cpuinfo_values", lambda field: cpuinfo.get(field, []))
    assert choose_precision("auto") == policy
    assert choose_precision("float32") == "float32"


@pytest.mark.parametrize("capability, policy", [((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16"),
                                                ((7, 5), "float32")])
def test_auto_precision_takes_bf16_on_gpus_with_bf16_tensor_cores(monkeypatch, capability, policy):
    import tensorflow as tf

    from fmnist.training import choose_precision

    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: {"compute_capability": capability})
    assert choose_precision("auto") == policy

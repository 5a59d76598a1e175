"""Inference speed of one model in every runtime it exports to, side by side on the same test images.

    python benchmarks/inference_speed.py models/RUN.keras   # a trained model
    python benchmarks/inference_speed.py --arch fast        # an untrained one: the speed does not depend on weights

Runtimes: Keras `model.predict`, a direct call `model(x)`, the SavedModel, ONNX Runtime, LiteRT float and LiteRT
int8 (all through fmnist.ship.runtimes, as `predict` runs them, on all cores). At batch 1 it times each call: median
and 99th-percentile latency, and images/s over all the calls. At batch 256: images/s. The runtimes take turns
round by round, so a slow spell of this shared machine falls on all of them alike.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from machine import describe_machine  # noqa: E402

from fmnist.config import Number  # noqa: E402
from fmnist.errors import run_guarded  # noqa: E402
from fmnist.models import MODELS  # noqa: E402
from fmnist.speed.cpu import isa_flags  # noqa: E402


def make_runners(model, folder):
    """{label: function(float32 batch) -> probabilities}, from the model and the files exported from it."""
    from fmnist.ship.export import KERAS_FORMAT, write_int8_tflite
    from fmnist.ship.runtimes import LiteRTRunner, OnnxRunner, SavedModelRunner

    paths = {"saved_model": folder / "m.savedmodel", "onnx": folder / "m.onnx", "litert": folder / "m.tflite"}
    for fmt, path in paths.items():
        model.export(str(path), format=KERAS_FORMAT[fmt], verbose=False)
    from fmnist.data import load_fashion_mnist

    write_int8_tflite(model, folder / "m.int8.tflite", load_fashion_mnist().x_train)
    return {
        "Keras model.predict": lambda x: model.predict(x, batch_size=len(x), verbose=0),
        "Keras model(x)": lambda x: model(x, training=False).numpy(),
        "TF SavedModel": SavedModelRunner(paths["saved_model"]).run,
        "ONNX Runtime": OnnxRunner(paths["onnx"]).run,
        "LiteRT float32": LiteRTRunner(paths["litert"]).run,
        "LiteRT int8": LiteRTRunner(folder / "m.int8.tflite").run,
    }


def measure(runners, images, calls, big_batch, rounds):
    """{label: (batch-1 latencies in s, [batch-256 images/s per round])}, the runtimes taking turns."""
    single = {label: [] for label in runners}
    batched = {label: [] for label in runners}
    big = images[:big_batch]
    for run in runners.values():  # warm-up: first calls build graphs and plan memory
        for _ in range(3):
            run(images[:1])
        run(big)
    for r in range(rounds):
        share = images[r * calls:(r + 1) * calls]
        for label, run in runners.items():
            for i in range(len(share)):
                started = time.perf_counter()
                run(share[i:i + 1])
                single[label].append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(4):
                run(big)
            batched[label].append(4 * len(big) / (time.perf_counter() - started))
    return {label: (np.array(single[label]), batched[label]) for label in runners}


def format_table(results):
    base = 1 / np.mean(results["Keras model.predict"][0])
    lines = [f"{'runtime':<20} {'batch 1: median':>15} {'p99':>9} {'images/s':>9} {'vs predict':>10} "
             f"{'batch 256: images/s':>20}"]
    for label, (latencies, batched) in results.items():
        rate = 1 / latencies.mean()
        median, p99 = 1e3 * np.median(latencies), 1e3 * np.percentile(latencies, 99)
        lines.append(f"{label:<20} {median:>12.3f} ms {p99:>6.2f} ms {rate:>9,.0f} "
                     f"{rate / base:>9.1f}x {np.median(batched):>20,.0f}")
    fastest = max(results, key=lambda label: 1 / results[label][0].mean())
    ratio = (1 / results[fastest][0].mean()) / base
    lines.append(f"Fastest at batch 1: {fastest}, {ratio:.0f}x Keras model.predict (goal: >= 20x): "
                 f"{'met' if ratio >= 20 else 'NOT met'}")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", metavar="MODEL.keras", help="a trained model (default: --arch, untrained)")
    parser.add_argument("--arch", default="fast", choices=sorted(MODELS),
                        help="the architecture to build when no MODEL is given (resnet18 at width 16)")
    count = Number(int, 1)
    parser.add_argument("--calls", type=count, default=200, help="batch-1 calls per runtime per round (default 200)")
    parser.add_argument("--rounds", type=count, default=3, help="rounds, the runtimes taking turns (default 3)")
    parser.add_argument("--batch", type=count, default=256, help="the large batch (default 256)")
    args = parser.parse_args(argv)

    import keras

    from fmnist.data import load_fashion_mnist
    from fmnist.evaluation import float32_copy, load_model
    from fmnist.models import build_model

    print(describe_machine())
    print(f"CPU flags: {' '.join(isa_flags()) or 'no AVX2'}")
    if args.model:
        model = float32_copy(load_model(args.model))
        what = args.model
    else:
        keras.config.set_dtype_policy("float32")
        keras.utils.set_random_seed(0)
        model = build_model(args.arch, resnet_width=16)
        what = f"{args.arch} (untrained; speed does not depend on the weights)"
    images = load_fashion_mnist().x_test[..., None].astype("float32")
    needed = max(args.calls * args.rounds, args.batch)
    images = np.resize(images, (needed, 28, 28, 1)) if needed > len(images) else images
    model(images[:1])
    print(f"Model: {what}, {model.count_params():,} parameters, float32; {os.cpu_count()} cores; "
          f"{args.calls} x {args.rounds} calls at batch 1, 4 x {args.rounds} at batch {args.batch}")
    with tempfile.TemporaryDirectory() as folder:
        runners = make_runners(model, Path(folder))
        print(format_table(measure(runners, images, args.calls, args.batch, args.rounds)))
    print(f"Command: python benchmarks/inference_speed.py {' '.join(argv)}".rstrip())
    return 0


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))

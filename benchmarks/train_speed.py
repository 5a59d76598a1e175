"""Training throughput of the `cnn`: the baseline recipe against this project's path, interleaved in one process.

    python benchmarks/train_speed.py                    # 3 rounds of 25,600 images per setting
    python benchmarks/train_speed.py --rounds 5 --batch-sizes 64 --ops keras fused-adam project
    python benchmarks/train_speed.py --baseline-only    # the baseline epoch alone, for time_to_accuracy.py

The baseline recipe is fp32 `model.fit` on NumPy arrays at batch 64, with Keras's Adam and Dropout; its epoch of
60,000 images is the unit the README's times are given in ("baseline epochs"). The project's path is the tf.data
pipeline, several batches per call and the ops of fmnist/speed/fast_ops.py (TensorFlow's fused Adam kernel and the
byte-mask dropout), at float32 and at the policy --precision auto picks, at batch 64 and larger; by default each
also runs with Keras's own ops, to show what the project's bring. The settings take turns (round-robin), so a
noisy neighbour on a shared machine slows them alike; each round times one epoch from its start to its end, and
the table shows the median round.
"Of peak" divides the arithmetic done by the CPU's peak for that precision (benchmarks/machine.py, from its
instruction set and clock): a rough bound. The "vs baseline" ratios are the result.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import describe_machine, peak_flops  # noqa: E402

from fmnist.config import Number  # noqa: E402
from fmnist.errors import run_guarded  # noqa: E402

EPOCH_IMAGES = 60_000  # a baseline epoch: every training image once
OPS = {"keras": "Keras's Adam and dropout", "fused-adam": "fused Adam, Keras's dropout",
       "project": "fused Adam, byte-mask dropout"}  # --ops, and each one's label in the table


def training_flops_per_image(model):
    """Multiply-adds of the Conv2D and Dense layers, x2 for FLOPs, x3 for forward + both backward passes."""
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * c_out * kh * kw * layer.input.shape[-1]
        elif kind == "Dense":
            macs += layer.input.shape[-1] * layer.units
    return 3 * 2 * macs


def epoch_timer():
    """A callback that times the epoch from its start to its end, leaving out what fit does before and after.

    What it leaves out is not training, and not even steady: the end of a short fit call can wait seconds for
    tf.data's background threads (docs/experiments.md).
    """
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    return Timer()


class Setting:
    """One way of training the cnn, with its own model, warmed up before timing."""

    def __init__(self, label, *, policy, batch_size, pipeline, images, labels, steps_per_execution=1,
                 ops="keras"):
        import keras

        from fmnist.data import make_dataset
        from fmnist.models import build_cnn
        from fmnist.speed.fast_ops import use_byte_mask_dropout, use_fused_adam_kernel
        from fmnist.training import compile_model

        self.label, self.batch_size, self.pipeline, self.policy = label, batch_size, pipeline, policy
        self.images, self.labels = images, labels
        self.x_float = images[..., None].astype("float32")  # the baseline recipe's in-memory float array
        keras.mixed_precision.set_global_policy(policy)  # layers take the policy current when they are built
        model, optimizer = build_cnn(), keras.optimizers.Adam(1e-3)
        if ops in ("fused-adam", "project"):
            optimizer = use_fused_adam_kernel(optimizer)
        if ops == "project":
            model = use_byte_mask_dropout(model)
        self.model = compile_model(model, optimizer, steps_per_execution)
        keras.mixed_precision.set_global_policy("float32")
        if pipeline:
            self.data = make_dataset(images, labels, batch_size, shuffle=True, seed=0)
        self.seconds = []
        self.run(warm_up=True)

    def run(self, warm_up=False):
        n = 4 * self.batch_size if warm_up else len(self.images)
        timer = epoch_timer()
        if self.pipeline:
            data = self.data.take(n // self.batch_size)
            self.model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
        else:
            self.model.fit(self.x_float[:n], self.labels[:n], batch_size=self.batch_size, epochs=1, verbose=0,
                           callbacks=[timer])
        if not warm_up:
            self.seconds.append(timer.seconds)

    @property
    def images_per_second(self):
        return len(self.images) / statistics.median(self.seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=Number(int, 1), default=3)
    parser.add_argument("--images", type=Number(int, 1), default=25_600, help="images per timed round")
    parser.add_argument("--batch-sizes", type=Number(int, 1), nargs="+", default=[64, 256, 512],
                        help="batch sizes for the project's path")
    parser.add_argument("--precisions", nargs="+", default=["float32", "auto"],
                        choices=["float32", "auto", "mixed_bfloat16"], help="for the project's path")
    parser.add_argument("--steps-per-execution", type=Number(int, 1), nargs="+", default=[8],
                        help="batches per call into TensorFlow, for the project's path")
    parser.add_argument("--ops", nargs="+", choices=list(OPS), default=["keras", "project"],
                        help="for the project's path: Keras's own Adam update and dropout, TensorFlow's fused "
                             "Adam kernel alone, or the fused kernel and the byte-mask dropout (the project's)")
    parser.add_argument("--baseline-only", action="store_true", help="time the baseline recipe alone")
    args = parser.parse_args()

    from fmnist.data import load_fashion_mnist
    from fmnist.training import choose_precision

    print(describe_machine())
    data = load_fashion_mnist()
    images, labels = data.x_train[: args.images], data.y_train[: args.images]
    policies = [] if args.baseline_only else list(dict.fromkeys(choose_precision(p) for p in args.precisions))
    settings = [Setting("baseline recipe: fp32, NumPy arrays", policy="float32", batch_size=64, pipeline=False,
                        images=images, labels=labels)]
    settings += [Setting(f"project: {policy}, tf.data, {spe} step/call, {OPS[ops]}", policy=policy,
                         batch_size=bs, pipeline=True, images=images, labels=labels, steps_per_execution=spe,
                         ops=ops)
                 for policy in policies for bs in args.batch_sizes for spe in args.steps_per_execution
                 for ops in args.ops]

    for round_number in range(args.rounds):
        for setting in settings:
            setting.run()
        print(f"round {round_number + 1}/{args.rounds}: " + ", ".join(
            f"{s.seconds[-1]:.1f} s" for s in settings), flush=True)

    flops = training_flops_per_image(settings[0].model)
    base = settings[0].images_per_second
    print(f"\ncnn: {flops / 1e6:.0f} MFLOP per training image")
    print(f"{'setting':<78} {'batch':>5} {'images/s':>9} {'s/epoch':>8} {'vs baseline':>11} {'of peak':>8}")
    for s in settings:
        ips, peak = s.images_per_second, peak_flops(s.policy)
        of_peak = f"{ips * flops / peak:.1%}" if peak else "n/a"
        print(f"{s.label:<78} {s.batch_size:>5} {ips:>9.0f} {EPOCH_IMAGES / ips:>8.1f} {ips / base:>10.2f}x "
              f"{of_peak:>8}")
    print(f"Baseline epoch: {EPOCH_IMAGES / base:.1f} s ({EPOCH_IMAGES:,} images at the baseline recipe's rate)")


if __name__ == "__main__":
    run_guarded(main)

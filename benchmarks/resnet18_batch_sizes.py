"""ResNet-18 at batch 64, 256 and 512 and learning rate 0.01: accuracy and loss epoch by epoch, one run per batch.

    python benchmarks/resnet18_batch_sizes.py --epochs 10                  # for a GPU
    python benchmarks/resnet18_batch_sizes.py --width 8 --limit 6000 --epochs 2   # a taste on a CPU
    KERAS_BACKEND=jax python benchmarks/resnet18_batch_sizes.py ...        # where only JAX is installed

The comparison that ResNet-18 projects show: the same net, the same rate, three batch sizes. It trains
fmnist/models.py's `build_resnet18` on fmnist/data.py's arrays with plain Keras (`model.fit` on NumPy arrays, Adam
at a constant rate, no augmentation, 10 % of the training images held out for validation), so it runs on any
Keras backend: the GPU machine this project is lent has JAX but no TensorFlow. Each batch size trains for
--epochs, or stops at the end of the first epoch that passes --minutes. It writes one history per batch size
(`resnet18-w64-bs64.pkl`, ..., which graph_history.py plots), a JSON summary and the figure of all of them.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fmnist.config import Number  # noqa: E402
from fmnist.errors import UserError, run_guarded  # noqa: E402


def accelerator():
    """The name of the GPU the backend computes on, or None on a CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind if device.platform == "gpu" else None
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else None
    return None


def train_one(batch_size, data, args):
    """Train a fresh ResNet-18 at `batch_size`: its history, seconds per epoch and test accuracy."""
    import keras

    from fmnist.models import build_resnet18

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    model = build_resnet18(args.width)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    seconds = []

    class Clock(keras.callbacks.Callback):
        """Times each epoch, and stops at the end of the first one past the time allowed."""

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            seconds.append(now - self.epoch_start)
            if args.minutes and now - self.start > 60 * args.minutes:
                self.model.stop_training = True

    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs, shuffle=True,
                        validation_data=(x_val, y_val), callbacks=[Clock()], verbose=2)
    _, test_accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    return history.history, seconds, test_accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=Number(int, 1), nargs="+", default=[64, 256, 512])
    parser.add_argument("--learning-rate", type=Number(float, 0, min_inclusive=False), default=0.01)
    parser.add_argument("--epochs", type=Number(int, 1), default=10, help="the most epochs per batch size")
    parser.add_argument("--minutes", type=Number(float, 0), default=0,
                        help="stop a batch size after the first epoch past this many minutes (0: never)")
    parser.add_argument("--width", type=Number(int, 1), default=64, help="the first stage's channels (64 published)")
    parser.add_argument("--limit", type=Number(int, 1), help="train on only this many images (a quick look)")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16"], default="auto",
                        help="auto: mixed_bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--seed", type=Number(int, 0), default=1337)
    parser.add_argument("--out", type=Path, default=Path("history"), help="folder for the histories and the figure")
    args = parser.parse_args()

    import keras

    from fmnist.data import load_fashion_mnist, split_train_val
    from fmnist.run.files import writable_folder, write_file
    from fmnist.run.records import write_history, write_record

    args.batch_sizes = list(dict.fromkeys(args.batch_sizes))  # each once: each has its own files
    stem = f"resnet18-w{args.width}"
    history_paths = {b: args.out / f"{stem}-bs{b}.pkl" for b in args.batch_sizes}
    summary_path, figure_path = args.out / f"{stem}-batch-sizes.json", args.out / f"{stem}-batch-sizes.png"
    outputs = [*history_paths.values(), summary_path, figure_path]
    writable_folder(args.out)
    for path in outputs:  # before the minutes of training, not after them
        if path.exists() or path.is_symlink():
            raise UserError(f"{path} already exists; remove it or pass another --out folder")
    gpu = accelerator()
    precision = ("mixed_bfloat16" if gpu else "float32") if args.precision == "auto" else args.precision
    keras.mixed_precision.set_global_policy(precision)
    data = load_fashion_mnist()
    train, val = split_train_val(data.x_train, data.y_train, val_fraction=0.1, seed=args.seed, limit=args.limit)
    arrays = [(x[..., None].astype("float32"), y) for x, y in (train, val, (data.x_test, data.y_test))]
    where = f"{gpu or 'CPU'}, Keras {keras.__version__} on {keras.backend.backend()}, {precision}"
    print(f"ResNet-18 width {args.width}, Adam at {args.learning_rate:g}, {len(train[1]):,} training images; {where}")

    histories, summary = {}, []
    for batch_size in args.batch_sizes:
        print(f"\n## Batch {batch_size}")
        history, seconds, test_accuracy = train_one(batch_size, arrays, args)
        write_history(history_paths[batch_size], history)
        histories[f"batch {batch_size}"] = history
        steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]  # the first epoch compiles
        summary.append(dict(batch_size=batch_size, epochs=len(seconds), seconds_per_epoch=steady,
                            first_epoch_seconds=seconds[0], best_val_accuracy=max(history["val_accuracy"]),
                            test_accuracy=test_accuracy))

    print("\n| batch | epochs | s per epoch (first) | best validation accuracy | test accuracy (last epoch) |")
    print("|---|---|---|---|---|")
    for row in summary:
        print(f"| {row['batch_size']} | {row['epochs']} | {row['seconds_per_epoch']:.1f} "
              f"({row['first_epoch_seconds']:.1f}) | {100 * row['best_val_accuracy']:.2f} % | "
              f"{100 * row['test_accuracy']:.2f} % |")
    write_record(summary_path,
                 dict(device=where, width=args.width, learning_rate=args.learning_rate, seed=args.seed,
                      training_images=len(train[1]), runs=summary))

    import matplotlib

    matplotlib.use("Agg")
    from fmnist.figures import figure_png, plot_histories

    epochs = sorted({row["epochs"] for row in summary})
    title = (f"ResNet-18 (width {args.width}), Adam at {args.learning_rate:g}: "
             f"{' / '.join(map(str, epochs))} epochs on {gpu or 'a CPU'} (training solid, validation dashed)")
    write_file(figure_path, figure_png(plot_histories(histories, title=title)))
    print(f"\nWrote {', '.join(map(str, outputs))}")


if __name__ == "__main__":
    run_guarded(main)

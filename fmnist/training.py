"""Everything between the settings and model.fit: the seed, the precision, the optimizer, compile, callbacks.

The training script calls these in the order a Keras user expects (fashion_mnist.py: build, compile, fit).
This module imports Keras: import it only once the command line has been parsed.
"""

import math
import sys

import keras

from fmnist.run.checkpoints import KeptModelCheckpoint, ResumableEarlyStopping
from fmnist.speed.cpu import bf16_pays


def set_seed(seed, deterministic=False):
    """Seed Python, NumPy, TensorFlow and Keras. `deterministic` also makes TensorFlow pick reproducible kernels,
    so that two runs with the same seed give identical histories (some ops get slower)."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def choose_precision(requested):
    """The Keras dtype policy for --precision: `auto` takes mixed_bfloat16 on a GPU with bf16 tensor cores
    (compute capability 8.0, Ampere, and later; older ones emulate bf16 slowly) or a CPU where bf16 pays."""
    if requested != "auto":
        return requested
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "mixed_bfloat16" if tuple(capability) >= (8, 0) else "float32"
    return "mixed_bfloat16" if bf16_pays() else "float32"


def set_precision(requested):
    """Set the global dtype policy for --precision (it must happen before the model is built); returns it."""
    policy = choose_precision(requested)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def make_optimizer(config, steps_per_epoch, learning_rate=None):
    """Adam, or AdamW when weight decay is set; a constant rate, or linear warm-up then cosine decay to zero.
    `learning_rate` replaces config.learning_rate (tf.distribute's --scale-lr)."""
    peak = config.learning_rate if learning_rate is None else learning_rate
    rate = peak
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=peak, warmup_steps=warmup)
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)


# Batches per call into TensorFlow. One call per batch spends a fixed Python overhead per step; 8 spread it, which
# made the `cnn` 11 % faster at batch 64 on 2 CPU cores (benchmarks/train_speed.py --steps-per-execution 1 8).
# Callbacks that act at batch end, such as the Ctrl-C handler, then act every 8 batches.
STEPS_PER_EXECUTION = 8


def compile_model(model, optimizer, steps_per_execution=STEPS_PER_EXECUTION):
    """Compile for integer labels, with accuracy and top-5 accuracy.

    `steps_per_execution` runs that many batches in one call into TensorFlow (see STEPS_PER_EXECUTION).
    """
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model


def make_callbacks(paths, config, earlier_history):
    """NaN guard, the checkpoint of the kept model (--keep), early stopping (--patience) and TensorBoard. The
    checkpoint and early stopping pick up from `earlier_history` when a run is resumed (empty otherwise)."""
    val_losses = earlier_history.get("val_loss", [])
    best = min((v for v in val_losses if math.isfinite(v)), default=math.inf)
    return [
        keras.callbacks.TerminateOnNaN(),
        KeptModelCheckpoint(paths.model, config.keep, best),
        # Without patience it still runs, never stopping, so that --keep best ends with the best epoch's weights.
        ResumableEarlyStopping(config.patience or config.epochs, val_losses, paths.model,
                               restore_best_weights=config.keep == "best"),
        keras.callbacks.TensorBoard(log_dir=str(paths.tensorboard)),
    ]


class EpochProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, kept within the epoch's length. With steps_per_execution > 1, Keras reports the
    epoch's last, partial call into TensorFlow as a full one, so the bar ran past its end (`48/43` for 43 steps in
    calls of 8).

    Where stdout is not a terminal (a file, a pipe, a notebook), one plain line per epoch instead: Keras's bar
    writes colour escape codes whatever the output is, which a log file shows as `[1m8/32[0m`."""

    def set_params(self, params):
        super().set_params(params)
        if self.verbose == 1 and not _is_terminal(sys.stdout):
            self.verbose = 2  # Keras's "one line per epoch", which has no escape codes

    def on_train_batch_end(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)  # `batch` counts from 0
        super().on_train_batch_end(batch, logs)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False

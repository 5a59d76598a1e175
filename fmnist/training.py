"""Everything between the settings and a trained model: seeds, precision, optimizer, compile, callbacks, fit."""

import dataclasses
import math

from fmnist.architectures import build_model
from fmnist.cpu import bf16_pays
from fmnist.fast_ops import use_fast_ops


def set_seed(seed, deterministic=False):
    """Seed Python, NumPy, TensorFlow and Keras. `deterministic` also makes TensorFlow pick reproducible kernels,
    so that two runs with the same seed give identical histories (some ops get slower)."""
    import keras
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


def set_precision(policy):
    """Set the global policy; it must happen before the model is built."""
    import keras

    keras.mixed_precision.set_global_policy(policy)


def build_and_compile(config, devices, steps_per_epoch):
    """The seeded model for `config`, built and compiled within the devices' scope, and its precision policy.

    The learning rate is scaled by the number of replicas with --scale-lr; the fast ops are used unless
    --no-fast-ops (fmnist/fast_ops.py).
    """
    set_seed(config.seed, config.deterministic)
    precision = choose_precision(config.precision)
    set_precision(precision)
    with devices.scope():
        model = build_model(config.model, config.resnet_width)
        optimizer = make_optimizer(dataclasses.replace(config, learning_rate=devices.learning_rate(config)),
                                   steps_per_epoch)
        if config.fast_ops:
            model, optimizer = use_fast_ops(model, optimizer)
        compile_model(model, optimizer)
    return model, precision


def make_optimizer(config, steps_per_epoch):
    """Adam, or AdamW when weight decay is set; a constant rate, or linear warm-up then cosine decay to zero."""
    import keras

    rate = config.learning_rate
    if config.schedule == "cosine":
        total = config.epochs * steps_per_epoch
        warmup = min(round(config.warmup_epochs * steps_per_epoch), total - 1)
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=config.learning_rate, warmup_steps=warmup)
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(rate)
    return optimizer


# Batches per call into TensorFlow. One call per batch spends a fixed Python overhead per step; 8 spread it, which
# made the `cnn` 11 % faster at batch 64 on 2 CPU cores (benchmarks/train_speed.py --steps-per-execution 1 8).
# Callbacks that act at batch end, such as the Ctrl-C handler, then act every 8 batches.
STEPS_PER_EXECUTION = 8


def compile_model(model, optimizer, steps_per_execution=STEPS_PER_EXECUTION):
    """Compile for integer labels, with accuracy and top-5 accuracy.

    `steps_per_execution` runs that many batches in one call into TensorFlow (see STEPS_PER_EXECUTION).
    """
    import keras

    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")],
        steps_per_execution=steps_per_execution,
    )
    return model


def make_callbacks(paths, patience, keep, earlier_history):
    """The checkpoint keeps the `keep` ("best" or "last") epoch's model; it and early stopping pick up from
    `earlier_history` when a run is resumed (empty otherwise)."""
    import keras

    from fmnist.checkpoints import KeptModelCheckpoint, ResumableEarlyStopping

    val_losses = earlier_history.get("val_loss", [])
    best = min((v for v in val_losses if math.isfinite(v)), default=math.inf)
    return [
        keras.callbacks.TerminateOnNaN(),
        KeptModelCheckpoint(paths.model, keep, best),
        ResumableEarlyStopping(patience, val_losses, paths.model, restore_best_weights=keep == "best"),
        keras.callbacks.TensorBoard(log_dir=str(paths.tensorboard)),
    ]


def train(model, train_ds, val_ds, epochs, callbacks, *, initial_epoch=0):
    """Fit with Keras's progress bar, from `initial_epoch` (a resumed run) to `epochs`.

    SIGINT or SIGTERM ends it at the end of the current batch with fmnist.interrupt.TrainingInterrupted.
    """
    from fmnist.interrupt import StopOnSignal
    from fmnist.progress import EpochProgbarLogger

    with StopOnSignal() as stop:
        # shuffle=False only silences a warning: the tf.data pipeline already reshuffles every epoch.
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                  callbacks=[*callbacks, stop, EpochProgbarLogger()], shuffle=False)

"""Train a Fashion-MNIST classifier with Keras 3 on TensorFlow.

    python fashion_mnist.py                           # the default cnn for 20 epochs
    python fashion_mnist.py --model lenet --epochs 5  # any setting below can be overridden like this
    python fashion_mnist.py --model fast              # a speed-run recipe for CPUs (about two minutes)
    python fashion_mnist.py --model best              # the most accurate recipe (47 minutes on 2 cores)
    python fashion_mnist.py --resume RUN              # continue a run stopped by Ctrl-C, SIGTERM or a crash
    python fashion_mnist.py --sweep batch_size=64,256,512     # one run per value, then a comparison
    python fashion_mnist.py evaluate models/RUN.keras         # the test report of a saved model
    python fashion_mnist.py predict models/RUN.keras shirt.jpg  # classify your own pictures (--explain: why)
    python fashion_mnist.py export models/RUN.keras --int8      # SavedModel, ONNX and LiteRT files, checked
    python fashion_mnist.py show-data                 # a sprite of sample images per class
    tensorboard --logdir=tensorboard_logs             # watch the runs

Each run writes models/<run>.keras (per --keep: the epoch with the lowest validation loss, or the last one),
history/<run>.pkl (the Keras history dict), history/<run>.json (the run record with the test report),
history/<run>-{confusion,misclassified,feature-maps,confused-pair}.png and tensorboard_logs/<run>/ (scalars,
images at every epoch, hparams), then prints the test report.
The history and the record are rewritten after every epoch, so a stopped run loses at most the epoch under way.
"""

import dataclasses
import functools
import math
import os
import sys

# -----------------------------------------------------------------------------------------------------------
# Hyperparameters: edit them here, or override any of them on the command line (for example --epochs 5).
# `--model fast` and `--model best` bring their own recipes (fmnist/recipes.py); flags still override them.
MODEL = "cnn"  # cnn | mlp | lenet | resnet18 | fast | best
EPOCHS = 20
BATCH_SIZE = 64
LEARN_RATE = 0.001
SCHEDULE = "cosine"  # constant | cosine (linear warm-up, then cosine decay to zero)
WARMUP_EPOCHS = 0
WEIGHT_DECAY = 0.0  # > 0 trains with AdamW instead of Adam
AUGMENT = "flip"  # none | flip | flip-shift | flip-shift-erase
TTA = "none"  # test-time augmentation: none | flip (average with the mirror) | flip-shift (and 1 px shifts of both)
VAL_FRACTION = 0.1  # share of the 60,000 training images held out for validation
PATIENCE = 5  # early stopping: epochs without a lower validation loss
KEEP = "best"  # best (the epoch with the lowest validation loss) | last (the final epoch, as a cosine run ends)
SEED = 1337
LIMIT = None  # train on a stratified subset of this many images; None trains on all of them
PRECISION = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
RESNET_WIDTH = 64  # first-stage channels of resnet18 (64 is the published net; 16 suits a laptop)
# -----------------------------------------------------------------------------------------------------------
DEFAULTS = dict(model=MODEL, epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARN_RATE, schedule=SCHEDULE,
                warmup_epochs=WARMUP_EPOCHS, weight_decay=WEIGHT_DECAY, augment=AUGMENT, tta=TTA,
                val_fraction=VAL_FRACTION, patience=PATIENCE, keep=KEEP, seed=SEED, limit=LIMIT,
                precision=PRECISION, resnet_width=RESNET_WIDTH)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the way

from fmnist import UserError  # noqa: E402 - the block above must stay at the very top
from fmnist.cli import run_guarded  # noqa: E402
from fmnist.config import parse_config  # noqa: E402

COMMANDS = ("evaluate", "predict", "export", "show-data")


def main(argv, extra_callbacks=()):
    """Train (the default command), or run one of COMMANDS. `extra_callbacks` lets benchmarks observe a run."""
    if argv and argv[0] in COMMANDS:
        from fmnist.commands import run_command

        return run_command(argv[0], argv[1:])
    config, sweep = parse_config(
        argv, DEFAULTS,
        description=__doc__.split("\n")[0] + f" Other commands: {', '.join(COMMANDS)} (add --help after one).",
    )
    from fmnist.data import load_fashion_mnist
    from fmnist.resume import NEW_RUN, read_resume_point

    # --resume: the interrupted run's record holds its settings and its history so far
    config, so_far = read_resume_point(config) if config.resume else (config, NEW_RUN)
    data = load_fashion_mnist(config.data_dir, config.verify)
    if sweep:
        from fmnist.sweep import run_sweep

        return run_sweep(config, sweep, data, run_training)
    run_training(config, data, so_far, extra_callbacks)
    return 0


def run_training(config, data, so_far=None, extra_callbacks=()):
    """One training run on the loaded data (resumed from `so_far` when given); returns its run record."""
    from fmnist.data import split_train_val
    from fmnist.distributed import read_role, worker_out
    from fmnist.resume import NEW_RUN, resume_command
    from fmnist.runs import default_run_name, reopen_run, reserve_run

    so_far = so_far or NEW_RUN

    # ## Prepare the data
    (x_train, y_train), (x_val, y_val) = split_train_val(
        data.x_train, data.y_train, config.val_fraction, config.seed, config.limit)
    print(f"Data: {data.source}; {len(x_train):,} train, {len(x_val):,} validation, {len(data.x_test):,} test")

    # ## Claim the run's output files (before training, so an unwritable --out fails now, not after 20 epochs).
    # With --strategy multiworker only the chief writes into --out; a bad TF_CONFIG fails here.
    role = read_role(config.strategy)
    if config.resume:
        paths = reopen_run(config.out, config.run_name)
    else:
        paths = reserve_run(worker_out(role, config.out), config.run_name, default_run_name(config))
    print(f"Run: {paths.name}")

    # TensorFlow only now, so that --help and errors in the flags, --resume, the data or --out answer at once.
    from fmnist.architectures import build_model
    from fmnist.checkpoints import RunKeeper, restore_last_epoch
    from fmnist.data import make_dataset
    from fmnist.distributed import (
        epoch_callback_on_local_copy,
        local_copy,
        shard_by_data,
        start_distribution,
        train_distributed,
        write_weights_digest,
    )
    from fmnist.fast_ops import use_byte_mask_dropout
    from fmnist.history import make_record, write_history, write_record
    from fmnist.interrupt import TrainingInterrupted
    from fmnist.report import write_report
    from fmnist.tensorboard_logging import log_hparams, make_epoch_images_callback
    from fmnist.training import (
        choose_precision,
        compile_model,
        make_callbacks,
        make_optimizer,
        set_precision,
        set_seed,
    )

    # ## Choose the devices: first, since MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    # --batch-size is per replica; the pipelines yield global batches, which the strategy splits.
    dist = start_distribution(role, config.worker_timeout)
    batch_size = dist.global_batch(config.batch_size)
    learning_rate = config.learning_rate * (dist.replicas if config.scale_lr else 1)
    print(dist.describe(config.batch_size, learning_rate))
    train_ds = shard_by_data(make_dataset(x_train, y_train, batch_size, shuffle=True, seed=config.seed,
                                          augment=config.augment))
    val_ds = shard_by_data(make_dataset(x_val, y_val, batch_size))

    # ## Build the model (resumed: with the weights and optimizer state of its last completed epoch)
    set_seed(config.seed, config.deterministic)
    precision = choose_precision(config.precision)
    set_precision(precision)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    rebuild = functools.partial(build_model, config.model, config.resnet_width)
    with dist.strategy.scope():
        model = compile_model(use_byte_mask_dropout(rebuild()),
                              make_optimizer(dataclasses.replace(config, learning_rate=learning_rate),
                                             steps_per_epoch))
    restore_last_epoch(model, paths, so_far)
    model.summary()
    print(f"Precision: {precision}")

    # ## Train. After every epoch the history, the run record and a backup for --resume are saved atomically.
    def save(history, seconds, status, test, figures=None):
        if history:
            write_history(paths.history, history)
        record = make_record(run=paths.name, config=config, precision=precision, data_source=data.source,
                             history=history, train_seconds=seconds, test=test, files=paths.files(),
                             figures=figures, status=status) | dist.record(config.batch_size)
        write_record(paths.record, record)
        return record

    keeper = RunKeeper(paths, so_far, save)
    epoch_images = make_epoch_images_callback(paths.tensorboard / "images", x_val, y_val)
    if dist.name == "multiworker":  # images are the chief's alone, and predicting under the strategy is not
        epoch_images = epoch_callback_on_local_copy(epoch_images, rebuild)
    callbacks = [*make_callbacks(paths, config.patience, config.keep, so_far.history), keeper, epoch_images,
                 *extra_callbacks]
    try:
        train_distributed(dist, model, train_ds, val_ds, epochs=config.epochs, callbacks=callbacks,
                          initial_epoch=so_far.epochs)
    except TrainingInterrupted as stop:  # Ctrl-C or SIGTERM: the unfinished epoch is dropped, and redone on resume
        keeper.finish("interrupted")
        then = ("--resume does not support --strategy multiworker." if dist.name == "multiworker"
                else f"To continue:\n    {resume_command(config)}")
        print(f"Interrupted ({stop}) after {len(keeper.history.get('loss', []))} of {config.epochs} epochs; "
              f"the history so far is in {paths.record}. {then}", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None  # ends a sweep too: the user asked to stop
    history, seconds = keeper.history, keeper.seconds
    epochs_run = len(history["loss"])
    diverged = any(math.isnan(loss) for loss in history["loss"])  # TerminateOnNaN stopped the run
    if diverged:
        keeper.finish("diverged")
        raise UserError(f"training diverged (the loss became NaN in epoch {epochs_run}); lower "
                        f"--learning-rate (now {config.learning_rate:g}). The history so far is in {paths.history}")

    write_weights_digest(model)
    if not dist.role.is_chief:
        keeper.finish("completed")  # into its temporary folder; the chief reports
        return None
    if dist.name == "multiworker":
        model = local_copy(model, rebuild)

    # ## Report on the kept model (with --keep best, EarlyStopping restored its weights) on the test set, once
    test, figures = write_report(model, data.x_test, data.y_test, folder=paths.history.parent, stem=paths.name,
                                 tensorboard_dir=paths.tensorboard / "test", step=epochs_run, tta=config.tta)
    record = keeper.finish("completed", test, figures)
    log_hparams(paths.tensorboard, paths.name, {**config.hyperparameters(), "precision": precision},
                {f"test/{key}": test[key] for key in ("accuracy", "top5_accuracy", "loss")}, epochs_run)
    print(f"{epochs_run} epochs in {seconds:.0f} s | files: {paths.model}, {paths.history}, {paths.record}, "
          f"{paths.tensorboard}/")
    return record


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))

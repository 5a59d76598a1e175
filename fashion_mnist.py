"""Train a Fashion-MNIST classifier with Keras 3 on TensorFlow.

    python fashion_mnist.py                           # the default cnn for 20 epochs
    python fashion_mnist.py --model lenet --epochs 5  # any setting below can be overridden like this
    python fashion_mnist.py --resume RUN              # continue a run stopped by Ctrl-C, SIGTERM or a crash
    tensorboard --logdir=tensorboard_logs             # watch the runs

Each run writes models/<run>.keras (best by validation loss), history/<run>.pkl (the Keras history dict),
history/<run>.json (the run record) and tensorboard_logs/<run>/, then reports test accuracy and top-5 accuracy.
The history and the record are rewritten after every epoch, so a stopped run loses at most the epoch under way.
"""

import math
import os
import sys

# -----------------------------------------------------------------------------------------------------------
# Hyperparameters: edit them here, or override any of them on the command line (for example --epochs 5).
# `--model fast` brings its own recipe (fmnist/recipes.py); flags still override it.
MODEL = "cnn"  # cnn | mlp | lenet | resnet18 | fast
EPOCHS = 20
BATCH_SIZE = 64
LEARN_RATE = 0.001
SCHEDULE = "cosine"  # constant | cosine (linear warm-up, then cosine decay to zero)
WARMUP_EPOCHS = 0
WEIGHT_DECAY = 0.0  # > 0 trains with AdamW instead of Adam
AUGMENT = "flip"  # none | flip | flip-shift
TTA = False  # test-time augmentation: average with the mirrored image
VAL_FRACTION = 0.1  # share of the 60,000 training images held out for validation
PATIENCE = 5  # early stopping: epochs without a lower validation loss
SEED = 1337
LIMIT = None  # train on a stratified subset of this many images; None trains on all of them
PRECISION = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
RESNET_WIDTH = 64  # first-stage channels of resnet18 (64 is the published net; 16 suits a laptop)
# -----------------------------------------------------------------------------------------------------------

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the way

from fmnist import UserError  # noqa: E402 - the block above must stay at the very top
from fmnist.cli import run_guarded  # noqa: E402
from fmnist.config import parse_config  # noqa: E402


def main(argv, extra_callbacks=()):
    """Train one model. `extra_callbacks` lets benchmarks observe a real run without changing it."""
    config = parse_config(
        argv,
        defaults=dict(model=MODEL, epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARN_RATE,
                      schedule=SCHEDULE, warmup_epochs=WARMUP_EPOCHS, weight_decay=WEIGHT_DECAY, augment=AUGMENT,
                      tta=TTA, val_fraction=VAL_FRACTION, patience=PATIENCE, seed=SEED, limit=LIMIT,
                      precision=PRECISION, resnet_width=RESNET_WIDTH),
        description=__doc__.split("\n")[0],
    )
    from fmnist.data import load_fashion_mnist, split_train_val
    from fmnist.resume import NEW_RUN, read_resume_point, resume_command
    from fmnist.runs import default_run_name, reopen_run, reserve_run

    # ## --resume: the interrupted run's record holds its settings and its history so far
    config, so_far = read_resume_point(config) if config.resume else (config, NEW_RUN)

    # ## Prepare the data
    data = load_fashion_mnist(config.data_dir, config.verify)
    (x_train, y_train), (x_val, y_val) = split_train_val(
        data.x_train, data.y_train, config.val_fraction, config.seed, config.limit)
    print(f"Data: {data.source}; {len(x_train):,} train, {len(x_val):,} validation, {len(data.x_test):,} test")

    # ## Claim the run's output files (before training, so an unwritable --out fails now, not after 20 epochs)
    if config.resume:
        paths = reopen_run(config.out, config.run_name)
    else:
        paths = reserve_run(config.out, config.run_name, default_run_name(config))
    print(f"Run: {paths.name}")

    # TensorFlow only now, so that --help and errors in the flags, --resume, the data or --out answer at once.
    from fmnist.architectures import build_model
    from fmnist.checkpoints import RunKeeper, restore_last_epoch
    from fmnist.data import make_dataset
    from fmnist.evaluation import evaluate
    from fmnist.history import make_record, write_history, write_record
    from fmnist.interrupt import TrainingInterrupted
    from fmnist.training import (
        choose_precision,
        compile_model,
        make_callbacks,
        make_optimizer,
        set_precision,
        set_seed,
        train,
    )

    train_ds = make_dataset(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed,
                            augment=config.augment)
    val_ds = make_dataset(x_val, y_val, config.batch_size)

    # ## Build the model (resumed: with the weights and optimizer state of its last completed epoch)
    set_seed(config.seed, config.deterministic)
    precision = choose_precision(config.precision)
    set_precision(precision)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    model = compile_model(build_model(config.model, config.resnet_width), make_optimizer(config, steps_per_epoch))
    restore_last_epoch(model, paths, so_far)
    model.summary()
    print(f"Precision: {precision}")

    # ## Train. After every epoch the history, the run record and a backup for --resume are saved atomically.
    def save(history, seconds, status, test):
        if history:
            write_history(paths.history, history)
        write_record(paths.record, make_record(
            run=paths.name, config=config, precision=precision, data_source=data.source, history=history,
            train_seconds=seconds, test=test, files=paths.files(), status=status))

    keeper = RunKeeper(paths, so_far, save)
    try:
        callbacks = [*make_callbacks(paths, config.patience, so_far.history), keeper, *extra_callbacks]
        train(model, train_ds, val_ds, config.epochs, callbacks, initial_epoch=so_far.epochs)
    except TrainingInterrupted as stop:  # Ctrl-C or SIGTERM: the unfinished epoch is dropped, and redone on resume
        keeper.finish("interrupted")
        print(f"Interrupted ({stop}) after {len(keeper.history.get('loss', []))} of {config.epochs} epochs; "
              f"the history so far is in {paths.record}. To continue:\n    {resume_command(config)}", file=sys.stderr)
        return stop.exit_code
    history, seconds = keeper.history, keeper.seconds
    diverged = any(math.isnan(loss) for loss in history["loss"])  # TerminateOnNaN stopped the run

    # ## Evaluate the best model (EarlyStopping restored its weights) once on the test set, and save the history
    test = None if diverged else evaluate(model, data.x_test, data.y_test, tta=config.tta)
    keeper.finish("diverged" if diverged else "completed", test)
    if diverged:
        raise UserError(f"training diverged (the loss became NaN in epoch {len(history['loss'])}); lower "
                        f"--learning-rate (now {config.learning_rate:g}). The history so far is in {paths.history}")
    print(f"Test accuracy {test['accuracy']:.4f} | top-5 {test['top5_accuracy']:.4f} | loss {test['loss']:.4f} | "
          f"{len(history['loss'])} epochs in {seconds:.0f} s | files: {paths.model}, {paths.history}, "
          f"{paths.record}, {paths.tensorboard}/")
    return 0


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))

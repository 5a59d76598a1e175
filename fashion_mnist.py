"""Train a Fashion-MNIST classifier with Keras 3 on TensorFlow.

    python fashion_mnist.py                           # the default cnn for 20 epochs
    python fashion_mnist.py --model lenet --epochs 5  # any setting below can be overridden like this
    tensorboard --logdir=tensorboard_logs             # watch the runs

    python fashion_mnist.py --sweep batch_size=64,256,512  # one run per value, then a comparison figure and table
    python fashion_mnist.py evaluate models/RUN.keras        # the test report of a saved model
    python fashion_mnist.py predict models/RUN.keras shirt.jpg  # classify your own pictures
    python fashion_mnist.py show-data                      # a sprite of sample images per class

Each run writes models/<run>.keras (best by validation loss), history/<run>.pkl (the Keras history dict),
history/<run>.json (the run record with the test report), history/<run>-{confusion,misclassified,feature-maps}.png
and tensorboard_logs/<run>/ (scalars, images at every epoch, hparams), then prints the test report.
"""

import math
import os
import sys

# -----------------------------------------------------------------------------------------------------------
# Hyperparameters: edit them here, or override any of them on the command line (for example --epochs 5).
MODEL = "cnn"  # cnn | mlp | lenet | resnet18
EPOCHS = 20
BATCH_SIZE = 64
LEARN_RATE = 0.001
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

COMMANDS = ("evaluate", "predict", "show-data")


def main(argv):
    if argv and argv[0] in COMMANDS:
        from fmnist.commands import run_command

        return run_command(argv[0], argv[1:])
    config, sweep = parse_config(
        argv,
        defaults=dict(model=MODEL, epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARN_RATE,
                      val_fraction=VAL_FRACTION, patience=PATIENCE, seed=SEED, limit=LIMIT, precision=PRECISION,
                      resnet_width=RESNET_WIDTH),
        description=__doc__.split("\n")[0] + f" Other commands: {', '.join(COMMANDS)} (add --help after one).",
    )
    from fmnist.data import load_fashion_mnist

    data = load_fashion_mnist(config.data_dir, config.verify)
    if sweep:
        from fmnist.sweep import run_sweep

        return run_sweep(config, sweep, data, run_training)
    run_training(config, data)
    return 0


def run_training(config, data):
    """One training run on the loaded data; returns its run record."""
    # Heavy imports only now, so that --help and usage errors answer at once.
    import keras

    from fmnist.architectures import build_model
    from fmnist.data import make_dataset, split_train_val
    from fmnist.history import make_record, write_history, write_record
    from fmnist.report import write_report
    from fmnist.runs import default_run_name, reserve_run
    from fmnist.tensorboard_logging import log_hparams, make_epoch_images_callback
    from fmnist.training import choose_precision, compile_model, make_callbacks, set_precision, train

    # ## Prepare the data
    (x_train, y_train), (x_val, y_val) = split_train_val(
        data.x_train, data.y_train, config.val_fraction, config.seed, config.limit)
    print(f"Data: {data.source}; {len(x_train):,} train, {len(x_val):,} validation, {len(data.x_test):,} test")
    train_ds = make_dataset(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed)
    val_ds = make_dataset(x_val, y_val, config.batch_size)

    # ## Claim the run's output files (before training, so an unwritable --out fails now, not after 20 epochs)
    paths = reserve_run(config.out, config.run_name, default_run_name(config))
    print(f"Run: {paths.name}")

    # ## Build the model
    keras.utils.set_random_seed(config.seed)
    precision = choose_precision(config.precision)
    set_precision(precision)
    model = compile_model(build_model(config.model, config.resnet_width), config.learning_rate)
    model.summary()
    print(f"Precision: {precision}")

    # ## Train
    callbacks = make_callbacks(paths, config.patience) + [
        make_epoch_images_callback(paths.tensorboard / "images", x_val, y_val)]
    history, seconds = train(model, train_ds, val_ds, config.epochs, callbacks)
    diverged = any(math.isnan(loss) for loss in history["loss"])  # TerminateOnNaN stopped the run
    epochs_run = len(history["loss"])

    # ## Save the history, then report on the best model (EarlyStopping restored its weights) on the test set
    write_history(paths.history, history)
    test, figures = (None, {}) if diverged else write_report(
        model, data.x_test, data.y_test, folder=paths.history.parent, stem=paths.name,
        tensorboard_dir=paths.tensorboard / "test", step=epochs_run)
    record = make_record(
        run=paths.name, config=config, precision=precision, data_source=data.source, history=history,
        train_seconds=seconds, test=test, files=paths.files(), figures=figures,
        status="diverged" if diverged else "completed")
    write_record(paths.record, record)
    log_hparams(paths.tensorboard, paths.name, {**config.hyperparameters(), "precision": precision},
                {f"test/{key}": test[key] for key in ("accuracy", "top5_accuracy", "loss")} if test else {},
                epochs_run)
    if diverged:
        raise UserError(f"training diverged (the loss became NaN in epoch {epochs_run}); lower "
                        f"--learning-rate (now {config.learning_rate:g}). The history so far is in {paths.history}")
    print(f"{epochs_run} epochs in {seconds:.0f} s | files: {paths.model}, {paths.record}, {paths.tensorboard}/")
    return record


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))

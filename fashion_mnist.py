"""Train a Fashion-MNIST classifier with Keras 3 on TensorFlow.

    python fashion_mnist.py                           # the default cnn for 20 epochs
    python fashion_mnist.py --model lenet --epochs 5  # any setting below can be overridden like this
    python fashion_mnist.py --model fast              # 93 % in 1–2 minutes on 2 CPU cores
    python fashion_mnist.py --model balanced          # 94 % in 2–4 minutes
    python fashion_mnist.py --model best              # 95 % in 25–75 minutes
    python fashion_mnist.py --model resnet20 --epochs 300   # the highest score, 95.6 %, in about 4 hours
    python fashion_mnist.py --resume RUN              # continue a run stopped by Ctrl-C, SIGTERM or a crash
    python fashion_mnist.py --sweep batch_size=64,256,512     # one run per value, then a comparison
    python fashion_mnist.py evaluate models/RUN.keras         # the test report of a saved model
    python fashion_mnist.py predict models/RUN.keras shirt.jpg  # your own pictures or folders (--explain: why)
    python fashion_mnist.py export models/RUN.keras --int8      # SavedModel, ONNX and LiteRT files, checked
    python fashion_mnist.py serve models/RUN.onnx               # TF Serving's REST API and a page, on :8500
    python fashion_mnist.py show-data                 # a sprite of sample images per class
    tensorboard --logdir=tensorboard_logs             # watch the runs

Each run writes models/<run>.keras (per --keep: the epoch with the lowest validation loss, or the last one),
history/<run>.pkl (the Keras history dict), history/<run>.json (the run record with the test report),
history/<run>-{confusion,misclassified,feature-maps,confused-pair}.png and tensorboard_logs/<run>/ (scalars,
images at every epoch, hparams), then prints the test report.
The history and the record are rewritten after every epoch, so a stopped run loses at most the epoch under way.
"""

import os
import sys

# -----------------------------------------------------------------------------------------------------------
# Hyperparameters: edit them here, or override any of them on the command line (for example --epochs 5).
# The models (their layers) and recipes (fast, balanced, best, resnet20) are in fmnist/models.py; a flag beats a recipe.
# Each is declared once more, with its type, range and help, in fmnist/config.py SETTINGS.
MODEL = "cnn"  # cnn | mlp | lenet | resnet18 | fast | balanced | best | resnet20
EPOCHS = 20
BATCH_SIZE = 64
LEARNING_RATE = 0.001
SCHEDULE = "cosine"  # constant | cosine (linear warm-up, then cosine decay to zero)
WARMUP_EPOCHS = 0
WEIGHT_DECAY = 0.0  # > 0 trains with AdamW instead of Adam
AUGMENT = "flip"  # none | flip | flip-shift | flip-shift-erase
SHIFT = 2  # pixels: the farthest flip-shift and flip-shift-erase move an image each way
TTA = "none"  # test-time copies: none | flip (+ mirror) | flip-shift (+ 1 px left, right) | flip-shift-xy (+ up, down)
VAL_FRACTION = 0.1  # share of the 60,000 training images held out for validation
PATIENCE = 5  # early stopping: epochs without a lower validation loss (the recipes never stop early)
KEEP = "best"  # best (the epoch with the lowest validation loss) | last (the final epoch, as a cosine run ends)
SEED = 1337
LIMIT = None  # train on a stratified subset of this many images; None trains on all of them
PRECISION = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
RESNET_WIDTH = 64  # first-stage channels of resnet18 (64 is the published net; 16 suits a laptop)
# -----------------------------------------------------------------------------------------------------------
HYPERPARAMETERS = {name: value for name, value in globals().items() if name.isupper()}  # the block above

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the way

from fmnist.quiet import hide_cuda_noise  # noqa: E402

hide_cuda_noise()  # no CUDA error lines on a machine without a GPU (a real GPU's errors still show)
from fmnist.cli import COMMANDS, run_command  # noqa: E402
from fmnist.config import hyperparameter_defaults, parse_config  # noqa: E402 - the block above must stay on top
from fmnist.errors import run_guarded  # noqa: E402
from fmnist.run.resume import FRESH_START  # noqa: E402

DEFAULTS = hyperparameter_defaults(HYPERPARAMETERS)


def main(argv, extra_callbacks=()):
    """Train (the default command), or run one of COMMANDS. `extra_callbacks` lets benchmarks observe a run."""
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    config, sweep = parse_config(
        argv, DEFAULTS,
        description=__doc__.split("\n")[0] + f" Other commands: {', '.join(COMMANDS)} (add --help after one).",
    )
    from fmnist.data import load_fashion_mnist
    from fmnist.run.resume import read_resume_point

    # --resume: the interrupted run's record holds its settings and the history of its completed epochs
    config, earlier = read_resume_point(config) if config.resume else (config, FRESH_START)
    data = load_fashion_mnist(config.data_dir, config.verify)
    if sweep:
        from fmnist.run.sweep import run_sweep

        return run_sweep(config, sweep, data, run_training)
    run_training(config, data, earlier, extra_callbacks)
    return 0


def run_training(config, data, earlier=FRESH_START, extra_callbacks=(), paths=None):
    """One training run on the loaded data (resumed after the `earlier` epochs); returns its run record, or None
    on a multiworker worker that leaves the report to the chief.

    `paths`: the run's files when its name is already claimed (a sweep claims all its runs' names first)."""
    from fmnist.data import split_train_val
    from fmnist.run.names import claim_run
    from fmnist.speed.cluster import read_role

    # ## Prepare the data, and claim the run's files (so that an unwritable --out fails now, not after 20 epochs)
    (x_train, y_train), (x_val, y_val) = split_train_val(
        data.x_train, data.y_train, config.val_fraction, config.seed, config.limit)
    print(f"Data: {data.source}; {len(x_train):,} train, {len(x_val):,} validation, {len(data.x_test):,} test")
    role = read_role(config.strategy)  # --strategy multiworker: a bad TF_CONFIG fails here
    # The run is locked (fmnist/run/names.py) from here until the process exits: no other process can use it.
    paths = paths or claim_run(config, role.out_folder(config.out))
    print(f"Run: {paths.name}")

    # TensorFlow loads only now, so that --help and errors in the flags, --resume, the data or --out answer at once.
    from fmnist import training
    from fmnist.data import make_dataset
    from fmnist.models import build_model
    from fmnist.report import write_report
    from fmnist.run.checkpoints import RunRecorder, restore_last_epoch
    from fmnist.run.resume import resume_command
    from fmnist.run.signals import StopOnSignal, TrainingInterrupted
    from fmnist.run.tensorboard import log_hparams, make_epoch_images_callback
    from fmnist.ship.card import provenance
    from fmnist.speed.devices import start_devices
    from fmnist.speed.fast_ops import use_fast_ops

    # One device, mirrored GPUs or several machines; --batch-size is per replica, the pipelines yield global batches.
    devices = start_devices(role, config.worker_timeout)
    print(devices.describe(config))
    batch_size = devices.global_batch(config.batch_size)
    train_ds = make_dataset(x_train, y_train, batch_size, shuffle=True, seed=config.seed, augment=config.augment,
                            shift=config.shift)
    val_ds = make_dataset(x_val, y_val, batch_size)

    # ## Build and compile the model (the layers are in fmnist/models.py). Resumed: with the weights and optimizer
    # state of its last completed epoch.
    training.set_seed(config.seed, config.deterministic)
    precision = training.set_precision(config.precision)
    with devices.scope():  # tf.distribute: the variables go to every replica
        model = build_model(config.model, config.resnet_width)
        optimizer = training.make_optimizer(config, len(train_ds), devices.learning_rate(config))
        fast_ops = "off (--no-fast-ops): Keras's own Adam, Dropout and BatchNormalization"
        if config.fast_ops:  # faster stand-ins for some of Keras's ops; the saved model names plain Keras classes
            model, optimizer, fast_ops = use_fast_ops(model, optimizer)
        training.compile_model(model, optimizer)
    restore_last_epoch(model, paths, earlier)
    model.summary()
    print(f"Precision: {precision}")
    print(f"Fast ops: {fast_ops}")

    # ## Train. After every epoch the history, the run record and a backup for --resume are saved atomically.
    run_facts = {"run": paths.name, "model": config.model, "hyperparameters": config.hyperparameters(),
                 "precision": precision, "data_source": data.source, "files": paths.files(),
                 **devices.record(config.batch_size), "provenance": provenance(fast_ops=fast_ops)}
    recorder = RunRecorder(paths, earlier, run_facts)
    epoch_images = make_epoch_images_callback(paths.tensorboard / "images", x_val, y_val)
    callbacks = [*training.make_callbacks(paths, config, earlier.history), recorder,
                 devices.predicting_callback(epoch_images), *extra_callbacks]

    def how_to_continue():  # the unfinished epoch is dropped, and redone on resume
        return (f"after {len(recorder.history.get('loss', []))} of {config.epochs} epochs; the history so far is in "
                f"{paths.record}. {devices.resume_hint(resume_command(config, paths.name))}")

    try:
        with StopOnSignal() as stop:  # Ctrl-C or SIGTERM: stop at the end of the batch, with TrainingInterrupted
            if devices.own_loop:  # multiworker, where model.fit fails in Keras 3 (fmnist/speed/multiworker.py)
                devices.fit(model, train_ds, val_ds, epochs=config.epochs, callbacks=callbacks,
                            initial_epoch=earlier.epochs, stop=stop)
            else:  # shuffle=False only silences a warning: the tf.data pipeline reshuffles every epoch
                model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=earlier.epochs,
                          callbacks=[*callbacks, stop, training.EpochProgbarLogger()], shuffle=False)
    except TrainingInterrupted as stopped:
        recorder.finish("interrupted")
        print(f"Interrupted ({stopped}) {how_to_continue()}", file=sys.stderr)
        raise SystemExit(stopped.exit_code) from None  # ends a sweep too: the user asked to stop
    except Exception:  # a crash (out of memory, a full disk): the record still says "running", so it resumes too
        print(f"Training failed {how_to_continue()}", file=sys.stderr)
        raise
    recorder.raise_if_diverged(config.learning_rate)

    # ## Report on the kept model (with --keep best, EarlyStopping restored its weights) on the test set, once
    model = devices.model_for_report(model)
    if model is None:  # a multiworker worker: its files are in a temporary folder, and the chief reports
        recorder.finish("completed")
        return None
    epochs_run = len(recorder.history["loss"])
    last_step = epochs_run - 1  # TensorBoard: the step of the last epoch's scalars, as Keras counts from 0
    test, figures = write_report(model, data.x_test, data.y_test, folder=paths.history.parent, stem=paths.name,
                                 tensorboard_dir=paths.tensorboard / "test", step=last_step, tta=config.tta)
    record = recorder.finish("completed", test, figures)
    log_hparams(paths.tensorboard, paths.name, {**config.hyperparameters(), "precision": precision},
                {f"test/{key}": test[key] for key in ("accuracy", "top5_accuracy", "loss")}, last_step)
    print(f"{epochs_run} epochs in {recorder.seconds:.0f} s | files: {paths.model}, {paths.history}, {paths.record}, "
          f"{paths.tensorboard}/")
    return record


if __name__ == "__main__":
    run_guarded(lambda: main(sys.argv[1:]))

"""The commands besides training (which fashion_mnist.py shows in full): evaluate, predict, export, serve,
show-data.

Each parses its own arguments here, without TensorFlow, so that `--help` and usage errors answer at once,
then calls the one package function that does the work.
"""

import argparse
from pathlib import Path

from fmnist import CLASS_NAMES
from fmnist.config import SETTINGS_BY_NAME, TTA_CHOICES, add_flag
from fmnist.evaluation import TTA_HELP
from fmnist.ship.export import CALIBRATION_IMAGES, FORMATS

SAMPLES_PER_CLASS = 12
SUFFIX_NOTE = "existing files get a -2, -3... suffix, never replaced"


def run_command(name, argv):
    """Parse `argv` for the command `name` (one of COMMANDS) and run it; returns the exit code."""
    description, add_arguments, run = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"fashion_mnist.py {name}", description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args, argv)


def _data_flags(parser):
    for name in ("data_dir", "verify"):
        add_flag(parser, SETTINGS_BY_NAME[name])


def _evaluate_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras")
    parser.add_argument("--out", metavar="DIR", help=f"folder for the report (default: the model's folder); "
                                                     f"{SUFFIX_NOTE}")
    parser.add_argument("--tta", choices=TTA_CHOICES, default="none",
                        help=f"{TTA_HELP}; a run's record names the one its test report used")
    _data_flags(parser)


def _evaluate(args, argv):
    from fmnist.report import evaluate_saved_model

    return evaluate_saved_model(args.model, args.out, args.data_dir, args.verify, args.tta)


def _predict_arguments(parser):
    parser.add_argument("model", metavar="MODEL",
                        help="a .keras model, or a .savedmodel folder, .onnx or .tflite file from export. A "
                             "SavedModel is a program: it runs only if its graph holds just the ops this "
                             "project's exports use, so none that reads or writes files")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, BMP, GIF or WebP files, any size "
                                                                   "and colour, or folders (searched recursively)")
    parser.add_argument("--csv", metavar="FILE", help="also write one row per image to FILE (a new file): file, top "
                                                       "class, probability, the top 3, the not-a-garment flag")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--explain", action="store_true",
                        help="also write IMAGE-explained.png beside each image: where the model looked for its top "
                             "class and the runner-up (Grad-CAM; input gradients for an mlp); needs a .keras model")


def _predict(args, argv):
    from fmnist.ship.predict import predict_files

    return predict_files(args.model, args.images, args.json, args.explain, args.csv)


def _export_arguments(parser):
    parser.add_argument("model", metavar="MODEL.keras")
    parser.add_argument("--format", choices=[*FORMATS, "all"], default="all",
                        help="saved_model: MODEL.savedmodel/; onnx: MODEL.onnx; litert: MODEL.tflite (default: all "
                             "three)")
    parser.add_argument("--int8", action="store_true",
                        help=f"also write MODEL.int8.tflite, quantised to 8-bit integers after training (calibrated "
                             f"on {CALIBRATION_IMAGES} training images); the float .tflite is made too, to compare")
    parser.add_argument("--out", metavar="DIR", help=f"folder for the files (default: the model's folder); "
                                                     f"{SUFFIX_NOTE}")
    _data_flags(parser)


def _export(args, argv):
    from fmnist.ship.export import export_model

    formats = FORMATS if args.format == "all" else (args.format,)
    return export_model(args.model, formats, args.int8, args.out, data_dir=args.data_dir, verify=args.verify)


def _serve_arguments(parser):
    from fmnist.config import Number
    from fmnist.ship.serve import MAX_BATCH, NAME_PATTERN, READ_TIMEOUT_S, THREADS, WINDOW_S, port_number

    parser.add_argument("model", metavar="MODEL", help="a .onnx or .tflite file from export (served without "
                        "TensorFlow), a .savedmodel folder or a .keras model (which adds heat maps)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 makes the model reachable from other machines")
    parser.add_argument("--port", type=port_number, default=8500, help="TCP port (TF Serving's REST port; 0: any "
                                                                       "free one)")
    parser.add_argument("--name", metavar="NAME", help=f"the model's name in the URLs /v1/models/NAME (default: the "
                        f"file's stem; {NAME_PATTERN})")
    parser.add_argument("--read-timeout", type=Number(float, 0, 3600, min_inclusive=False), default=READ_TIMEOUT_S,
                        metavar="SECONDS", help=f"a request whose body takes longer to arrive gets a 408 answer "
                             f"(default {READ_TIMEOUT_S:g})")
    parser.add_argument("--threads", type=Number(int, 1, 1024), default=THREADS, metavar="N",
                        help=f"threads of the ONNX or LiteRT runtime (default {THREADS}). Concurrent requests "
                             f"share a call: within {WINDOW_S * 1e3:g} ms, up to {MAX_BATCH} images")


def _serve(args, argv):
    from fmnist.ship.serve import serve

    return serve(args.model, args.host, args.port, name=args.name, threads=args.threads,
                 read_timeout=args.read_timeout)


def _show_data_arguments(parser):
    parser.add_argument("--out", default=".", metavar="DIR",
                        help="writes DIR/fashion-mnist-samples.png and DIR/tensorboard_logs/dataset/ "
                             "(default: the current directory)")
    _data_flags(parser)


def show_data(out, data_dir=None, verify=True):
    """The first SAMPLES_PER_CLASS training images of each class, one labelled row per class."""
    import numpy as np

    from fmnist.data import load_fashion_mnist
    from fmnist.figures import figure_png, plot_class_samples
    from fmnist.run.files import writable_folder, write_file
    from fmnist.run.names import free_name
    from fmnist.run.tensorboard import log_pngs

    data = load_fashion_mnist(data_dir, verify)
    samples = [data.x_train[np.flatnonzero(data.y_train == c)[:SAMPLES_PER_CLASS]] for c in range(len(CLASS_NAMES))]
    fig = plot_class_samples(samples, CLASS_NAMES)
    writable_folder(out, ["tensorboard_logs"])
    png = figure_png(fig)
    path = write_file(out / f"{free_name(out, 'fashion-mnist-samples', ['.png'])}.png", png, new=True)
    logdir = out / "tensorboard_logs" / free_name(out / "tensorboard_logs", "dataset", [""])
    log_pngs(logdir, {"dataset/samples": png}, step=0)
    print(f"Wrote {path} and {logdir}/ (tensorboard --logdir {out / 'tensorboard_logs'})")
    return 0


def _show_data(args, argv):
    return show_data(Path(args.out), args.data_dir, args.verify)


# name: (description for --help, its arguments, what it runs)
COMMANDS = {
    "evaluate": ("Measure a saved .keras model on the test set: metrics, per-class table, confusions, figures.",
                 _evaluate_arguments, _evaluate),
    "predict": ("Classify your own images with a saved .keras model, or a SavedModel folder, .onnx or .tflite file "
                "from export.", _predict_arguments, _predict),
    "export": ("Export a .keras model as a TensorFlow SavedModel, ONNX and LiteRT (.tflite) files, each checked on "
               "the test set against the Keras model, with a JSON card saying how to call it.",
               _export_arguments, _export),
    "serve": ("Serve a model over HTTP in TensorFlow Serving's REST API, with a page at / to try photos on it; each "
              "answer says when an image does not look like a garment.", _serve_arguments, _serve),
    "show-data": ("Write a sprite of sample images per class (PNG, and an image in TensorBoard).",
                  _show_data_arguments, _show_data),
}

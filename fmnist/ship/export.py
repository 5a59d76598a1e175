"""The `export` command: a .keras model as files other runtimes run, each checked before it is reported done.

Keras 3's own `model.export` writes the SavedModel, ONNX (through tf2onnx) and LiteRT files; TensorFlow Lite's
converter writes the int8 file. Every file is written under a temporary name in the output folder
(fmnist.run.files.staged), loaded in its own runtime (fmnist.ship.runtimes), run on the 10,000 test images and
compared with the Keras model; only then is it renamed into place, together with its JSON card (how to call it)
and its Markdown model card (fmnist.ship.card). A file that fails its check is removed, and the command exits 1
saying why.
"""

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES
from fmnist.errors import UserError, first_line, signals_deferred
from fmnist.run.files import remove, staged_together, temporary_files, writable_folder
from fmnist.run.names import claimed_name
from fmnist.ship.card import markdown_card, provenance, run_record_of
from fmnist.ship.ood import calibrate

FORMATS = ("saved_model", "onnx", "litert")
SUFFIX = {"saved_model": ".savedmodel", "onnx": ".onnx", "litert": ".tflite", "int8": ".int8.tflite"}
KERAS_FORMAT = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert"}
MIN_FLOAT_AGREEMENT = 0.999  # float formats compute what Keras computes; more disagreement means a broken export
MIN_INT8_AGREEMENT = 0.95  # int8 rounds every activation: a few flips are expected, a landslide is a bad conversion
CALIBRATION_IMAGES = 300
INT8_GOALS = {"size_ratio": 0.30, "accuracy_points_lost": 0.5}
CARD_SUFFIXES = (".json", ".md")  # beside each file: its card for programs, and its model card for people
CLAIM_SUFFIX = ".exporting"  # NAME.exporting: the empty file that holds the names while an export works


@dataclass
class Check:
    """How an exported file did on the test set, against the Keras model."""

    agreement: float  # share of test images with the same top-1 class as the Keras model
    accuracy: float
    max_difference: float  # largest difference in any class probability
    test: dict  # the file's own test report (fmnist.evaluation.summarise): per-class table, confusions


def output_paths(folder, stem, formats, int8):
    """{format: path} for the files to write (each one's cards go beside it: path + CARD_SUFFIXES)."""
    paths = {f: folder / f"{stem}{SUFFIX[f]}" for f in formats}
    if int8:
        paths["int8"] = folder / f"{stem}{SUFFIX['int8']}"
    return paths


def export_model(model_path, formats, int8, out, *, data_dir=None, verify=True):
    """The `export` command. Returns 0, or raises UserError (exit 1) with nothing half-written left behind."""
    from fmnist.ship.runtimes import require

    model_path = Path(model_path)
    if model_path.suffix.lower() != ".keras":
        raise UserError(f"{model_path}: export takes a .keras model (the file training writes to models/)")
    # Check for what is missing before any work: tf2onnx writes the ONNX file, the runtimes check the files.
    for module in (["tf2onnx", "onnxruntime"] if "onnx" in formats else []) + \
                  (["ai_edge_litert"] if "litert" in formats or int8 else []):
        require(module)
    if int8 and "litert" not in formats:
        formats = (*formats, "litert")  # the int8 file is measured against the float one
    created = not (Path(out) if out else model_path.parent).exists()
    folder = writable_folder(out or model_path.parent)
    suffixes = [SUFFIX[f] + extra for f in [*formats, *(["int8"] if int8 else [])] for extra in ("", *CARD_SUFFIXES)]
    try:
        # The names are taken at the start (an empty NAME.exporting while it works), so that a second export of
        # the same model at once gets NAME-2 instead of finding its files taken at the end.
        with claimed_name(folder, model_path.stem, suffixes, CLAIM_SUFFIX) as stem:
            paths = output_paths(folder, stem, formats, int8)
            for path in paths.values():  # an export killed outright left these; the name is ours now
                for written in (path, *(f"{path}{suffix}" for suffix in CARD_SUFFIXES)):
                    for leftover in temporary_files(written):
                        remove(leftover)
            _export_files(model_path, paths, data_dir, verify)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # a folder this command made, and left empty: it goes too
        raise
    return 0


def _export_files(model_path, paths, data_dir, verify):
    from fmnist.data import load_fashion_mnist
    from fmnist.evaluation import float32_copy
    from fmnist.ship.runtimes import open_model

    keras_runner = open_model(model_path, keras_only=True)
    model = float32_copy(keras_runner.model)
    keras_runner.model = model  # the reference: what the exported files compute, float32 arithmetic
    data = load_fashion_mnist(data_dir, verify)
    model(model_input_zeros(model))  # a loaded model has not been called, and Keras's exporters need it built
    reference = keras_runner.probabilities(data.x_test)
    keras_accuracy = float((reference.argmax(1) == data.y_test).mean())
    print(f"Model: {model_path} ({model.name}, {model.count_params():,} parameters), test accuracy "
          f"{keras_accuracy:.2%} (float32, no test-time augmentation); data: {data.source}")
    record = run_record_of(model_path)
    made = {"model": model.name, "parameters": model.count_params(), "keras_test_accuracy": keras_accuracy,
            "provenance": provenance(precision="float32 (exported files compute in float32)",
                                     trained_with=(record or {}).get("provenance"))}

    rows, cards = [], {}
    for fmt, path in paths.items():
        started = time.perf_counter()
        with _exporting(path) as (staging, (card_file, markdown_file)):
            # A signal that lands inside TensorFlow's converters can be swallowed, or come out as another error
            # (a RuntimeError from pybind11), or cut short the clean-up of a temporary SavedModel: it waits for them.
            with signals_deferred(waiting_for="the converter returns"):
                if fmt == "int8":
                    write_int8_tflite(model, staging, data.x_train)
                else:
                    model.export(str(staging), format=KERAS_FORMAT[fmt], verbose=False)
            check, runner = check_export(staging, reference, data.x_test, data.y_test)
            floor = MIN_INT8_AGREEMENT if fmt == "int8" else MIN_FLOAT_AGREEMENT
            if check.agreement < floor:
                raise UserError(f"{path.name}: its top-1 class agrees with the Keras model on only "
                                f"{check.agreement:.2%} of the test images (at least {floor:.1%} is required); "
                                "the file was removed")
            card = model_card(fmt, path, staging, runner, check, model_path=model_path, made=made,
                              ood=calibrate(runner, data))
            if fmt == "int8":
                card["int8"] = int8_summary(card, cards["litert"])
            card_file.write_bytes((json.dumps(card, indent=2) + "\n").encode())
            markdown_file.write_text(markdown_card(card, record))
        cards[fmt] = card
        rows.append((fmt, path, check, card["size_bytes"], time.perf_counter() - started))

    print(format_table(rows, keras_accuracy))
    if "int8" in cards:
        s = cards["int8"]["int8"]
        print(f"int8: {s['size_ratio']:.1%} of the float file's size (goal <= {INT8_GOALS['size_ratio']:.0%}), "
              f"{s['accuracy_points_lost']:+.2f} accuracy points lost (goal <= {INT8_GOALS['accuracy_points_lost']})"
              f": {'goals met' if s['goals_met'] else 'goals NOT met'}")
    print("Model cards: " + ", ".join(f"{p}{CARD_SUFFIXES[1]}" for p in paths.values()) + " (and .json beside "
          "each, for programs)")


def model_input_zeros(model):
    return np.zeros((1, *model.input_shape[1:]), "float32")


def check_export(path, reference, images, labels):
    """Load the file in its own runtime, run the test images, and compare with the Keras probabilities."""
    from fmnist.evaluation import summarise
    from fmnist.ship.runtimes import open_model

    runner = open_model(path)
    probabilities = runner.probabilities(images)
    return Check(agreement=float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                 accuracy=float((probabilities.argmax(1) == labels).mean()),
                 max_difference=float(np.abs(probabilities - reference).max()),
                 test=summarise(probabilities, labels)), runner


def write_int8_tflite(model, path, train_images, count=CALIBRATION_IMAGES, seed=0):
    """Post-training full-integer quantisation: int8 weights and activations, calibrated on `count` training
    images. Input and output stay float32 (quantised inside the file), so it is called like the float file."""
    import tempfile

    import tensorflow as tf

    rng = np.random.default_rng(seed)
    from fmnist.evaluation import model_input

    calibration = model_input(model, train_images[rng.choice(len(train_images), count, replace=False)])
    # The converter reads a SavedModel, which Keras writes: into a hidden folder beside the file, removed on any
    # exit, not into the system's temporary folder.
    with tempfile.TemporaryDirectory(dir=Path(path).parent, prefix=f"{Path(path).name}.") as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(count))
        # Integer kernels only: conversion fails rather than silently leaving an op in float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        Path(path).write_bytes(converter.convert())


def model_card(fmt, path, staging, runner, check, *, model_path, made, ood):
    """The JSON card of an exported file: how to call it, how it scored, its not-a-garment flag, where it came
    from. Paths are relative to the card: it may be read on another machine."""
    from fmnist.ship.card import onnx_opset
    from fmnist.ship.runtimes import runtime_version

    shape = [d if d is None else int(d) for d in runner.input_shape]
    return {
        "file": path.name,
        "format": {"saved_model": "TensorFlow SavedModel", "onnx": "ONNX", "litert": "LiteRT (TensorFlow Lite)",
                   "int8": "LiteRT (TensorFlow Lite), int8 full-integer quantised"}[fmt],
        "runtime": runtime_version(runner.kind),
        **({"onnx_opset": onnx_opset(staging)} if fmt == "onnx" else {}),
        "input": {"name": runner.input_name, "shape": shape, "dtype": "float32", "range": [0, 255],
                  "meaning": "raw greyscale pixel values 0-255 (not scaled: the model rescales them itself), "
                             "28x28, a light garment on a black background as in Fashion-MNIST; the first "
                             "dimension is the batch"},
        "output": {"name": runner.output_name, "shape": [None, len(CLASS_NAMES)], "dtype": "float32",
                   "meaning": "class probabilities (softmax), in the order of class_names"},
        "class_names": list(CLASS_NAMES),
        "test_accuracy": check.accuracy,
        "test_images": 10_000,
        "agreement_with_keras": check.agreement,
        "max_probability_difference": check.max_difference,
        "test": {key: value for key, value in check.test.items() if key != "confusion_matrix"},
        "keras_model": os.path.relpath(Path(model_path).resolve(), path.parent.resolve()),
        "architecture": made["model"],
        "parameters": made["parameters"],
        "keras_test_accuracy": made["keras_test_accuracy"],
        "size_bytes": _size(staging),
        "ood": ood,
        "provenance": made["provenance"],
        "command": made["provenance"]["command"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def int8_summary(card, float_card):
    ratio = card["size_bytes"] / float_card["size_bytes"]
    lost = 100 * (float_card["test_accuracy"] - card["test_accuracy"])
    return {"calibration_images": CALIBRATION_IMAGES, "float_file": float_card["file"],
            "float_size_bytes": float_card["size_bytes"], "size_ratio": ratio,
            "float_test_accuracy": float_card["test_accuracy"], "accuracy_points_lost": lost,
            "goals": INT8_GOALS,
            "goals_met": ratio <= INT8_GOALS["size_ratio"] and lost <= INT8_GOALS["accuracy_points_lost"]}


def format_table(rows, keras_accuracy):
    lines = [f"{'format':<12} {'file':<40} {'size':>9} {'agreement':>10} {'accuracy':>9} {'max |dp|':>9} "
             f"{'seconds':>7}",
             f"{'keras':<12} {'(float32 reference)':<40} {'':>9} {'':>10} {keras_accuracy:>9.2%}"]
    for fmt, path, check, size, seconds in rows:
        lines.append(f"{fmt:<12} {path.name:<40} {size / 1e6:>7.2f}MB {check.agreement:>10.2%} "
                     f"{check.accuracy:>9.2%} {check.max_difference:>9.1e} {seconds:>7.1f}")
    return "\n".join(lines)


@contextlib.contextmanager
def _exporting(path):
    """The exported file (or SavedModel folder) and its cards (path + CARD_SUFFIXES), staged together
    (fmnist.run.files.staged_together): all three appear when the block succeeds, never over anything, or none
    does. A failure inside a converter is one line naming the file it was making."""
    cards = [Path(f"{path}{suffix}") for suffix in CARD_SUFFIXES]
    try:
        with staged_together([path, *cards], folder=path if path.suffix == SUFFIX["saved_model"] else None) as \
                (staging, *card_files):
            yield staging, card_files
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - whatever a converter raises, the user gets one line
        raise UserError(f"{path.name}: export failed ({first_line(e)})") from None


def _size(path):
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size

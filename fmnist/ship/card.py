"""Where a model came from and what it is for: the provenance that every run record and exported file carries,
and the Markdown model card written beside each exported file, in the shape of Hugging Face's model cards.

Everything here is read from the machine, the package metadata and the run's own record: no TensorFlow import.
"""

import json
import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fmnist import CLASS_NAMES
from fmnist.speed.cpu import cpu_model, isa_flags

PACKAGES = ("tensorflow", "keras", "numpy", "onnxruntime", "ai-edge-litert", "tf2onnx")
ROOT = Path(__file__).resolve().parents[2]


def provenance(**facts):
    """The command line, the versions of Python and of PACKAGES, the project's commit (in a git checkout) and the
    CPU, with `facts` (the precision, the fast ops) after them."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    script = sys.argv[0]
    if Path(script).is_file():  # the script as the user would type it from the project's folder
        script = os.path.relpath(script)
    return {"command": shlex.join(["python", script, *sys.argv[1:]]),
            "python": platform.python_version(), "packages": versions, "commit": git_commit(),
            "cpu": {"model": cpu_model(), "flags": isa_flags()}, **facts}


def git_commit():
    """The project's commit, with "+ local changes" when the working tree differs from it; None outside git."""
    if not (ROOT / ".git").exists():
        return None
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()

        return git("rev-parse", "HEAD") + (" + local changes" if git("status", "--porcelain", "--untracked-files=no")
                                           else "")
    except (OSError, subprocess.SubprocessError):
        return None


def onnx_opset(path):
    """The default-domain opset an ONNX file declares (read with the onnx package, which tf2onnx installs)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the file has passed its checks; a missing package only costs this field
        return None
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def run_record_of(keras_model):
    """The run record that trained `keras_model` (models/RUN.keras -> history/RUN.json, as a run lays them out),
    or None. It is a file like any other: read capped, and only if its files.model names this model."""
    from fmnist.run.records import read_capped

    record_path = Path(keras_model).parent.parent / "history" / f"{Path(keras_model).stem}.json"
    try:
        record = json.loads(read_capped(record_path))
    except (OSError, ValueError, RecursionError):  # as fmnist.run.resume reads a record
        return None
    model_file = record.get("files", {}).get("model", "") if isinstance(record, dict) else ""
    return record if isinstance(model_file, str) and Path(model_file).name == Path(keras_model).name else None


def markdown_card(card, record):
    """The Markdown model card of an exported file, from its JSON card (fmnist.ship.export.model_card) and the run
    record that trained it (None when none was found beside the .keras model)."""
    test, ood, prov = card["test"], card["ood"], card["provenance"]
    pair = test["most_confused"][0] if test["most_confused"] else None
    lines = [
        "---",
        "library_name: keras",
        "pipeline_tag: image-classification",
        "datasets: [fashion_mnist]",
        "tags: [fashion-mnist, image-classification, " + card["format"].split(" ")[0].lower() + "]",
        f"metrics: [{{accuracy: {test['accuracy']:.4f}}}]",
        "---",
        "",
        f"# {card['file']}: a Fashion-MNIST garment classifier",
        "",
        f"{card['format']} file exported from `{card['keras_model']}` ({card['architecture']}, "
        f"{card['parameters']:,} parameters, {card['size_bytes'] / 1e6:.2f} MB). It gives the probabilities of the "
        f"ten classes: {', '.join(CLASS_NAMES)}.",
        "",
        "## Intended use and limits",
        "",
        "- **Input:** 28×28 greyscale images, a light garment centred on a black background, as Fashion-MNIST's "
        "product photos are stored; pixel values 0–255, not scaled. `python fashion_mnist.py predict` brings "
        "other photos to that form; the model has seen nothing else.",
        "- **For** learning, teaching and trying out classifiers of clothing photos. **Not for** decisions about "
        "people, or photos of worn clothes, several garments, or scenes.",
        f"- **Weakest:** {_weakest(test)}" + (f"; its most common confusion is {pair['true']} taken for "
                                              f"{pair['predicted']} ({pair['count']} of the test images)."
                                              if pair else "."),
        f"- **Not a garment?** Inputs unlike the training images are flagged, beside the prediction: {ood['rule']} "
        f"(score `{ood['score']}`, calibrated on {ood['images']:,} held-out images, {ood['split']}; it flags "
        f"{ood['validation_flagged']:.1%} of them).",
        "",
        "## Training",
        "",
        *_training_lines(record),
        "",
        "## Evaluation",
        "",
        f"On the 10,000 test images, run in {card['runtime']}: accuracy **{test['accuracy']:.2%}** "
        f"(top-5 {test['top5_accuracy']:.2%}); the Keras model scores {card['keras_test_accuracy']:.2%}, and the "
        f"two agree on {card['agreement_with_keras']:.2%} of the images.",
        "",
        "| class | precision | recall | f1 |",
        "|---|---|---|---|",
        *(f"| {row['class']} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} |"
          for row in test["per_class"]),
        "",
        "## Provenance",
        "",
        f"- Made by `{prov['command']}` on {card['created']}",
        f"- Python {prov['python']}; " + ", ".join(f"{name} {v}" for name, v in prov["packages"].items() if v),
        *([f"- ONNX opset {card['onnx_opset']}"] if card.get("onnx_opset") else []),
        f"- Project commit: {prov['commit'] or 'not from a git checkout'}",
        f"- CPU: {prov['cpu']['model']} ({', '.join(prov['cpu']['flags']) or 'no flags read'})",
        "",
        "## How to call it",
        "",
        f"Input `{card['input']['name']}`, shape {card['input']['shape']}, float32 pixel values 0–255; output "
        f"`{card['output']['name']}`, shape {card['output']['shape']}. `{card['file']}.json` beside this card has "
        "the same facts for programs, and `python fashion_mnist.py predict` or `serve` runs the file.",
        "",
    ]
    return "\n".join(lines)


def _weakest(test):
    row = min(test["per_class"], key=lambda r: r["f1"])
    return f"{row['class']} (f1 {row['f1']:.3f})"


def _training_lines(record):
    """The run's settings in plain words, saying when it trained on a subset or stopped early."""
    if record is None:
        return ["No run record was found beside the Keras model (`history/RUN.json`), so its training settings "
                "are unknown."]
    settings = record.get("hyperparameters", {}) if isinstance(record.get("hyperparameters"), dict) else {}
    limit, asked, run = settings.get("limit"), settings.get("epochs"), record.get("epochs_run")
    data = (f"**a subset: {limit:,} of the training images** (`--limit {limit}`)" if isinstance(limit, int)
            else "all 60,000 training images less the validation share")
    stopped = (f"; **it stopped early**, after {run} of {asked} epochs" if isinstance(run, int) and
               isinstance(asked, int) and run < asked else f"; {run} epoch{'s' * (run != 1)}" if isinstance(run, int)
               else "")
    shown = ", ".join(f"{key} {value}" for key, value in settings.items()
                      if key in ("model", "epochs", "batch_size", "learning_rate", "schedule", "augment", "seed"))
    prov = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
    return [f"- Run `{record.get('run')}` trained on {data}{stopped}.",
            f"- Settings: {shown}; precision {record.get('precision')}; fast ops: {prov.get('fast_ops', 'unknown')}.",
            f"- Command: `{prov.get('command', 'unknown')}`"]

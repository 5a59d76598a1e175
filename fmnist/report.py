"""The evaluation report of a model on the test set: printed, returned for the JSON record, and drawn as
figures that go to PNG files and to TensorBoard. Used after every training run and by `evaluate`."""

import json
from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES
from fmnist.evaluation import conv_feature_maps, predict_probabilities, summarise
from fmnist.figures import figure_png, plot_confusion_matrix, plot_feature_maps, plot_predictions
from fmnist.run.files import writable_folder, write_file
from fmnist.run.names import REPORT_FIGURES, claimed_name

MISTAKES_SHOWN = 24
FEATURE_MAP_IMAGE = 0  # the test image whose feature maps are drawn (an ankle boot)


def format_report(summary):
    """The report as text: metrics, the per-class table, and the most confused pairs."""
    lines = [f"Test accuracy {summary['accuracy']:.4f} | top-5 {summary['top5_accuracy']:.4f} | "
             f"loss {summary['loss']:.4f} | {summary['images']:,} images",
             f"{'class':<12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for row in summary["per_class"]:
        lines.append(f"{row['class']:<12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
                     f"{row['support']:>8,}")
    lines.append("Most confused (true → predicted):")
    lines += [f"  {pair['true']} → {pair['predicted']}: {pair['count']}" for pair in summary["most_confused"]]
    return "\n".join(lines)


def report_figures(model, images, labels, probabilities, summary):
    """{name: Figure}: the confusion matrix, the most confident mistakes, feature maps for conv models, and heat
    maps for the most confused pair of classes."""
    predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    mistakes = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES_SHOWN]
    figures = {
        "confusion": plot_confusion_matrix(
            summary["confusion_matrix"], CLASS_NAMES,
            title=f"{model.name}: test accuracy {summary['accuracy']:.2%} on {summary['images']:,} images"),
        "misclassified": plot_predictions(
            images[mistakes], labels[mistakes], predicted[mistakes], confidence[mistakes], CLASS_NAMES,
            title=f"{model.name}: the {len(mistakes)} most confident of {len(wrong):,} mistakes on the test set",
            columns=6),
    }
    maps = conv_feature_maps(model, images[FEATURE_MAP_IMAGE])
    if maps:
        i = FEATURE_MAP_IMAGE
        figures["feature-maps"] = plot_feature_maps(
            images[i], maps, title=f"{model.name}: feature maps for test image {i} ({CLASS_NAMES[labels[i]]}, "
                                   f"predicted {CLASS_NAMES[predicted[i]]} {confidence[i]:.0%})")
    if summary["most_confused"]:  # heat maps of both classes on a few images of each (fmnist/explain.py)
        from fmnist.explain import confused_pair_figure

        figures["confused-pair"] = confused_pair_figure(model, images, labels, probabilities,
                                                        summary["most_confused"][0])
    return figures


def write_report(model, images, labels, *, folder, stem, tensorboard_dir=None, step=0, tta="none"):
    """Measure `model` on the test images, print the report, write folder/<stem>-<figure>.png (the caller has
    claimed `stem`; an existing file is never replaced) and, with `tensorboard_dir`, log the figures there.

    `tta` averages each prediction over copies of the image (fmnist.evaluation.TTA_VIEWS).
    Returns (summary for the record, {figure name: path}).
    """
    probabilities = predict_probabilities(model, images, tta=tta)
    summary = summarise(probabilities, labels)
    print(format_report(summary))
    figures = report_figures(model, images, labels, probabilities, summary)
    pngs = {name: figure_png(fig) for name, fig in figures.items()}
    paths = {name: str(write_file(Path(folder) / f"{stem}-{name}.png", png, new=True)) for name, png in pngs.items()}
    if tensorboard_dir is not None:
        from fmnist.run.tensorboard import log_pngs

        log_pngs(tensorboard_dir, {f"test/{name}": png for name, png in pngs.items()}, step)
    print("Figures: " + ", ".join(paths.values()))
    return summary, paths


def evaluate_saved_model(model_path, out, data_dir=None, verify=True, tta="none"):
    """The `evaluate` command: the report of a saved model (with test-time augmentation: `tta`), written to --out
    (default: the model's folder) as <model>-evaluation.json and <model>-<figure>.png, with a suffix where a name
    is taken."""
    from fmnist.data import load_fashion_mnist
    from fmnist.ship.runtimes import open_model

    model_path = Path(model_path)
    model = open_model(model_path, keras_only=True).model
    data = load_fashion_mnist(data_dir, verify)
    folder = writable_folder(out or model_path.parent)
    suffixes = ["-evaluation.json"] + [f"-{name}.png" for name in REPORT_FIGURES]
    # The name is taken at once (an empty -evaluation.json), so two evaluations of one model never share it.
    with claimed_name(folder, model_path.stem, suffixes, "-evaluation.json") as stem:
        record_path = folder / f"{stem}-evaluation.json"
        print(f"Model: {model_path} ({model.name}, {model.count_params():,} parameters); data: {data.source}")
        summary, figures = write_report(model, data.x_test, data.y_test, folder=folder, stem=stem, tta=tta)
        record = {"model": str(model_path), "data_source": data.source, "tta": tta, "test": summary,
                  "figures": figures}
        write_file(record_path, (json.dumps(record, indent=2) + "\n").encode())
    print(f"Report: {record_path}")
    return 0

"""Every matplotlib figure the project draws. Functions return a Figure; the caller decides where it goes.

The figures that are not shown on screen are built with matplotlib.figure.Figure directly, not pyplot: no global
state, nothing to close, and no display needed, so they work headless and inside a training loop.
"""

import io

import numpy as np

# Keras 2.2 and older wrote `acc`; later versions write `accuracy`.
ACCURACY_KEYS = ("accuracy", "acc")
FIGURE_DPI = 150  # for PNG files; TensorBoard images use less to keep the event files small
RIGHT, WRONG = "#1a8a1a", "#d01c1c"
HISTORY_FIGURE_SIZE = (12, 4.8)  # inches


def _metric(history, names, prefix=""):
    for name in names:
        if prefix + name in history:
            return history[prefix + name]
    return None


def plot_histories(histories, title=None, validation_only=False, fig=None):
    """Accuracy and loss against epoch, training solid and validation dashed, one colour per run.

    `histories` maps a run name to its Keras history dict. Metrics a run lacks are left out of its panel.
    `validation_only` draws one solid line per run (validation), the view that compares the runs of a sweep.
    `fig`: an empty figure to draw on, such as a pyplot one to show on screen; by default a new headless one.
    """
    import matplotlib

    fig = fig or _figure(*HISTORY_FIGURE_SIZE)
    acc_ax, loss_ax = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"].colors
    splits = [("val_", "-", "")] if validation_only else [("", "-", " (train)"), ("val_", "--", " (validation)")]
    for i, (run, history) in enumerate(histories.items()):
        colour = colours[i % len(colours)]
        for ax, names in ((acc_ax, ACCURACY_KEYS), (loss_ax, ("loss",))):
            for prefix, style, split in splits:
                values = _metric(history, names, prefix)
                if values:
                    epochs = range(1, len(values) + 1)
                    ax.plot(epochs, values, style, color=colour, marker="o", markersize=3, label=f"{run}{split}")

    which = "Validation " if validation_only else ""
    for ax, what in ((acc_ax, "Accuracy"), (loss_ax, "Loss")):
        ax.set_title(which + (what.lower() if which else what))
        ax.set_xlabel("epoch")
        ax.set_ylabel(what.lower())
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {which.lower()}{what.lower()} recorded", transform=ax.transAxes, ha="center",
                    color="grey")
    if title:
        fig.suptitle(title)
    return fig


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_confusion_matrix(matrix, class_names, title=None, counts=True):
    """The counts, and each row divided by its total (the share of a true class given each label).

    `counts=False` draws the normalised panel alone, half the drawing time for the per-epoch image.
    """
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    panels = [(shares, "row-normalised (recall on the diagonal)", "{:.2f}")]
    if counts:
        panels.insert(0, (matrix, "counts", "{:.0f}"))
    fig = _figure(8 * len(panels), 7)
    for ax, (values, what, fmt) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels, strict=True):
        scale = values.max() or 1
        ax.imshow(values, cmap="Blues", vmin=0, vmax=scale)
        for (row, col), value in np.ndenumerate(values):
            if value:
                ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=8,
                        color="white" if value > scale / 2 else "black")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right")
        ax.set_yticks(ticks, class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"Confusion matrix, {what}")
    if title:
        fig.suptitle(title)
    return fig


def plot_predictions(images, labels, predicted, confidence, class_names, *, title=None, columns=5):
    """A grid of images, each framed and titled with its predicted class, confidence and true class: green
    when right, red when wrong.

    The grid is one picture in one Axes, not an Axes per image: that draws several times faster, which matters
    because the training callback draws it at every epoch.
    """
    side, frame, gap, label = images.shape[1], 1, 10, 11  # in image pixels; `label` leaves room for two lines
    cell_w, cell_h = side + 2 * frame + gap, side + 2 * frame + label
    rows = max(1, -(-len(images) // columns))
    canvas = np.full((rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    fig = _figure(cell_w * columns / 22, cell_h * rows / 22 + (0.3 if title else 0))
    ax = fig.add_subplot()
    ax.axis("off")
    for i, (image, true, guess, p) in enumerate(zip(images, labels, predicted, confidence, strict=True)):
        colour = RIGHT if guess == true else WRONG
        top, left = (i // columns) * cell_h + label, (i % columns) * cell_w + gap // 2
        canvas[top:top + side + 2 * frame, left:left + side + 2 * frame] = _rgb(colour)
        canvas[top + frame:top + frame + side, left + frame:left + frame + side] = (255 - image)[..., None]
        ax.text(left + frame + side / 2, top - 1, f"{class_names[guess]} {p:.0%}\ntrue: {class_names[true]}",
                ha="center", va="bottom", fontsize=8, color=colour)
    ax.imshow(canvas, interpolation="nearest")
    if title:
        fig.suptitle(title)
    return fig


def _rgb(colour):
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


def plot_feature_maps(image, feature_maps, title=None, channels=16):
    """The input image, then for each conv layer the `channels` most active of its output maps.

    `feature_maps` is a list of (layer name, array of shape (height, width, channels)).
    """
    fig = _figure(1.1 * (channels + 1), 1.25 * (len(feature_maps) + 1))
    axes = np.atleast_2d(fig.subplots(len(feature_maps) + 1, channels + 1))
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image, cmap="gray_r", vmin=0, vmax=255)
    axes[0, 0].set_title("input", fontsize=8)
    for row, (name, maps) in zip(axes[1:], feature_maps, strict=True):
        row[0].text(0.5, 0.5, f"{name}\n{maps.shape[0]}x{maps.shape[1]}x{maps.shape[2]}", ha="center",
                    va="center", fontsize=8, transform=row[0].transAxes)
        strongest = np.argsort(-maps.mean(axis=(0, 1)))[:channels]
        for ax, channel in zip(row[1:], strongest, strict=False):
            ax.imshow(maps[:, :, channel], cmap="viridis")
            ax.set_title(f"#{channel}", fontsize=7)
    fig.suptitle(title or "Feature maps (the most active channels of each conv layer)")
    return fig


def plot_class_samples(images_by_class, class_names):
    """A sprite of the dataset: one labelled row per class, that class's sample images side by side.

    One picture in one Axes, like plot_predictions, so that a hundred images draw in a fraction of a second.
    """
    side, gap = images_by_class[0].shape[1], 2
    columns = max(len(images) for images in images_by_class)
    canvas = np.full((len(class_names) * (side + gap) - gap, columns * (side + gap) - gap), 255, np.uint8)
    for row, images in enumerate(images_by_class):
        for column, image in enumerate(images):
            canvas[row * (side + gap):row * (side + gap) + side, column * (side + gap):column * (side + gap) + side] \
                = image
    fig = _figure(canvas.shape[1] / 30 + 1.3, canvas.shape[0] / 30)
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([row * (side + gap) + side / 2 for row in range(len(class_names))], class_names)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    return fig


def _heat_overlay(ax, image, heat):
    """The image in grey with the heat map over it: where the heat is high, the image shows through red-yellow."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_explanation(image, panels, title=None):
    """The image, then one heat-map overlay per (heat map in [0, 1], caption) in `panels`."""
    fig = _figure(2.4 * (len(panels) + 1), 2.9)
    axes = fig.subplots(1, len(panels) + 1)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("as the model sees it", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, (heat, caption) in zip(axes[1:], panels, strict=True):
        _heat_overlay(ax, image, heat)
        ax.set_title(f"evidence for {caption}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_confused_pair(images, labels, predicted, confidence, heats, *, classes, class_names, title=None):
    """One column per image: the image (titled with its prediction, green right, red wrong), then the heat map
    for each of the two `classes` (heats: one (N, 28, 28) array per class)."""
    fig = _figure(1.45 * len(images) + 1.2, 1.55 * (len(heats) + 1) + 0.4)
    axes = np.atleast_2d(fig.subplots(len(heats) + 1, len(images), squeeze=False))
    for column, (image, true, guess, p) in enumerate(zip(images, labels, predicted, confidence, strict=True)):
        ax = axes[0, column]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{class_names[guess]} {p:.0%}\ntrue: {class_names[true]}", fontsize=7,
                     color=RIGHT if guess == true else WRONG)
        for row, heat in enumerate(heats, start=1):
            _heat_overlay(axes[row, column], image, heat[column])
    for row, c in enumerate(classes, start=1):
        axes[row, 0].set_ylabel(f"for {class_names[c]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def figure_png(fig, dpi=FIGURE_DPI, format="png"):
    """The figure rendered as PNG bytes (or as `format`: svg, pdf, jpg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format, dpi=dpi)
    return buffer.getvalue()

"""Every matplotlib figure the project draws. Functions return a Figure; the caller decides where it goes.

The figures that are not shown on screen are built with matplotlib.figure.Figure directly, not pyplot: no global
state, nothing to close, and no display needed, so they work headless and inside a training loop.
"""

import io

import numpy as np

# Keras 2.2 and older wrote `acc`; later versions write `accuracy`.
ACCURACY_KEYS = ("accuracy", "acc")
FIGURE_DPI = 150  # for PNG files; TensorBoard images use less to keep the event files small
# Garments are drawn as the data set stores them, light on a dark background (0 = black), in every figure.
GARMENT_CMAP = "gray"
HEAT_CMAP = "jet"
HEAT_ENDS = ("no evidence", "strongest")
RIGHT, WRONG = "#1a8a1a", "#d01c1c"
HISTORY_FIGURE_SIZE = (12, 4.8)  # inches


def _metric(history, names, prefix=""):
    for name in names:
        if prefix + name in history:
            return history[prefix + name]
    return None


def plot_histories(histories, title=None, validation_only=False, fig=None):
    """Accuracy and loss against epoch: training solid with dots, validation dashed with squares.

    One run: training and validation in two colours as well. Several runs: one colour per run.
    `histories` maps a run name to its Keras history dict. Metrics a run lacks are left out of its panel.
    `validation_only` draws one solid line per run (validation), the view that compares the runs of a sweep.
    `fig`: an empty figure to draw on, such as a pyplot one to show on screen; by default a new headless one.
    Epochs count from 1 on whole-number ticks, so that a 1-epoch run reads as one point at epoch 1.
    """
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    fig = fig or _figure(*HISTORY_FIGURE_SIZE)
    acc_ax, loss_ax = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"].colors
    splits = [("val_", "-", "s", "")] if validation_only else \
        [("", "-", "o", "train"), ("val_", "--", "s", "validation")]
    one_run = len(histories) == 1 and not validation_only
    most_epochs = 1
    for i, (run, history) in enumerate(histories.items()):
        for ax, names in ((acc_ax, ACCURACY_KEYS), (loss_ax, ("loss",))):
            for j, (prefix, style, marker, split) in enumerate(splits):
                values = _metric(history, names, prefix)
                if values:
                    colour = colours[j if one_run else i % len(colours)]
                    label = split if one_run else f"{run} ({split})" if split else run
                    most_epochs = max(most_epochs, len(values))
                    ax.plot(range(1, len(values) + 1), values, style, color=colour, marker=marker, markersize=5,
                            markerfacecolor=colour if marker == "o" else "white", label=label)

    which = "Validation " if validation_only else ""
    for ax, what, better in ((acc_ax, "Accuracy", "higher"), (loss_ax, "Loss", "lower")):
        ax.set_title(f"{which}{what.lower() if which else what} ({better} is better)")
        ax.set_xlabel("epoch (one pass over the training images)")
        ax.set_ylabel(what.lower())
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0.5, most_epochs + 0.5)
        if most_epochs <= 12:  # every epoch gets its tick; beyond that, whole numbers only
            ax.set_xticks(range(1, most_epochs + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {which.lower()}{what.lower()} recorded", transform=ax.transAxes, ha="center",
                    color="grey")
    if title is None and one_run:
        title = f"{next(iter(histories))}: training and validation, epoch by epoch"
    elif title is None:
        title = f"{len(histories)} run{'s' * (len(histories) != 1)}, epoch by epoch"
        title += "" if validation_only else " (training solid, validation dashed)"
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
        canvas[top + frame:top + frame + side, left + frame:left + frame + side] = image[..., None]  # as stored
        ax.text(left + frame + side / 2, top - 1, f"{class_names[guess]} {p:.0%}\ntrue: {class_names[true]}",
                ha="center", va="bottom", fontsize=10, color=colour)
    ax.imshow(canvas, interpolation="nearest")
    if title:
        fig.suptitle(title)
    return fig


def _rgb(colour):
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


FEATURE_MAPS_CAPTION = ("A feature map is what one learned filter of a conv layer sees: the filter slides over the "
                        "image, and its map is bright where the image matches its pattern (an edge, a collar, a "
                        "sole).")


def plot_feature_maps(image, feature_maps, title=None, channels=6):
    """The input image, then one row per conv layer: the `channels` most active of its maps, each titled with its
    filter's number in that layer, on one colour scale per row (with its colour bar).

    `feature_maps` is a list of (layer name, array of shape (height, width, channels)).
    """
    rows = len(feature_maps)
    fig = _figure(1.5 * channels + 3.2, 1.75 * rows + 1.1)
    grid = fig.add_gridspec(rows, channels + 2, width_ratios=[2.2] + [1] * channels + [0.12])
    source = fig.add_subplot(grid[:, 0])
    source.imshow(image, cmap=GARMENT_CMAP, vmin=0, vmax=255)
    source.set_title("the input image", fontsize=10)
    source.set_xticks([])
    source.set_yticks([])
    for row, (name, maps) in enumerate(feature_maps):
        strongest = np.argsort(-maps.mean(axis=(0, 1)))[:channels]
        top = float(maps[:, :, strongest].max()) or 1.0
        for column, channel in enumerate(strongest, start=1):
            ax = fig.add_subplot(grid[row, column])
            shown = ax.imshow(maps[:, :, channel], cmap="viridis", vmin=0, vmax=top)
            ax.set_title(f"filter {channel}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 1:
                ax.set_ylabel(f"{_ordinal(row + 1)} conv layer\n({name})\n{maps.shape[0]}x{maps.shape[1]}, "
                              f"{maps.shape[2]} maps", fontsize=8)
        colour_bar = fig.colorbar(shown, cax=fig.add_subplot(grid[row, -1]))
        colour_bar.set_label("response", fontsize=8)
        colour_bar.ax.tick_params(labelsize=7)
    fig.suptitle(title or "Feature maps: the most active filters of each conv layer", fontsize=11)
    fig.supxlabel(_wrap(FEATURE_MAPS_CAPTION, 110), fontsize=9)
    return fig


def _ordinal(n):
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _wrap(text, width):
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_probabilities(images, labels, probabilities, class_names, columns=3):
    """Each image beside a bar chart of its ten class probabilities, as TensorFlow's "Basic classification"
    tutorial draws them: the predicted class's bar red when wrong, the true class's bar green."""
    rows = max(1, -(-len(images) // columns))
    fig = _figure(5.2 * columns, 2.3 * rows)
    axes = np.atleast_2d(fig.subplots(rows, 2 * columns, width_ratios=[1, 1.6] * columns, squeeze=False))
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, true, p) in enumerate(zip(images, labels, probabilities, strict=True)):
        picture, bars = axes[i // columns, 2 * (i % columns)], axes[i // columns, 2 * (i % columns) + 1]
        guess = int(np.argmax(p))
        picture.imshow(image, cmap=GARMENT_CMAP, vmin=0, vmax=255)
        picture.set_title(f"{class_names[guess]} {p[guess]:.0%}\ntrue: {class_names[true]}", fontsize=9,
                          color=RIGHT if guess == true else WRONG)
        bars.axis("on")
        colours = ["#999999"] * len(class_names)
        colours[guess] = RIGHT if guess == true else WRONG
        colours[true] = RIGHT
        bars.bar(range(len(class_names)), p, color=colours)
        bars.set_ylim(0, 1)
        bars.set_xticks(range(len(class_names)), [name.split("/")[0] for name in class_names], rotation=90,
                        fontsize=7)
        bars.tick_params(axis="y", labelsize=7)
        bars.spines[["top", "right"]].set_visible(False)
    fig.suptitle("Test images and the model's ten probabilities (green: the true class; red: a wrong guess)",
                 fontsize=11)
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
    ax.imshow(image, cmap=GARMENT_CMAP, vmin=0, vmax=255)
    shown = ax.imshow(heat, cmap=HEAT_CMAP, alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _heat_colour_bar(fig, axes):
    """One colour bar for all heat maps: each map is scaled to its own hottest point, so the ends are words."""
    import matplotlib

    colours = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0, 1), HEAT_CMAP)
    colour_bar = fig.colorbar(colours, ax=axes, ticks=[0, 1], fraction=0.04, pad=0.02, shrink=0.9)
    colour_bar.ax.set_yticklabels(HEAT_ENDS, fontsize=8)
    colour_bar.set_label("evidence for the class", fontsize=8)
    return colour_bar


def plot_explanation(image, panels, title=None):
    """The image, then one heat-map overlay per (heat map in [0, 1], caption) in `panels`, with a colour bar.

    The heading says in words what the maps are; `title` (such as the file and the method) goes below it, smaller.
    """
    fig = _figure(2.4 * (len(panels) + 1) + 1.0, 3.2)
    axes = fig.subplots(1, len(panels) + 1)
    axes[0].imshow(image, cmap=GARMENT_CMAP, vmin=0, vmax=255)
    axes[0].set_title("as the model sees it", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, (heat, caption) in zip(axes[1:], panels, strict=True):
        _heat_overlay(ax, image, heat)
        ax.set_title(f"evidence for {caption}", fontsize=9)
    _heat_colour_bar(fig, axes[1:])
    fig.suptitle("Where the model found evidence for each class (red: strongest, blue: none)", fontsize=10)
    if title:
        fig.supxlabel(title, fontsize=7, color="dimgrey")
    return fig


def plot_confused_pair(images, labels, predicted, confidence, heats, *, classes, class_names, title=None,
                       subtitle=None):
    """One column per image: the image (titled with its prediction, green right, red wrong), then the heat map
    for each of the two `classes` (heats: one (N, 28, 28) array per class), with a colour bar. `subtitle` (such as
    the method and its layer) goes under the title, smaller."""
    fig = _figure(1.45 * len(images) + 2.2, 1.55 * (len(heats) + 1) + 0.8)
    axes = np.atleast_2d(fig.subplots(len(heats) + 1, len(images), squeeze=False))
    for column, (image, true, guess, p) in enumerate(zip(images, labels, predicted, confidence, strict=True)):
        ax = axes[0, column]
        ax.imshow(image, cmap=GARMENT_CMAP, vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{class_names[guess]} {p:.0%}\ntrue: {class_names[true]}", fontsize=7,
                     color=RIGHT if guess == true else WRONG)
        for row, heat in enumerate(heats, start=1):
            _heat_overlay(axes[row, column], image, heat[column])
    axes[0, 0].set_ylabel("image", fontsize=8)
    for row, c in enumerate(classes, start=1):
        axes[row, 0].set_ylabel(f"evidence for\n{class_names[c]}", fontsize=8)
    _heat_colour_bar(fig, axes[1:, :])
    if title:
        fig.suptitle(title, fontsize=9)
    if subtitle:
        fig.supxlabel(subtitle, fontsize=7, color="dimgrey")
    return fig


def figure_png(fig, dpi=FIGURE_DPI, format="png"):
    """The figure rendered as PNG bytes (or as `format`: svg, pdf, jpg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format, dpi=dpi)
    return buffer.getvalue()

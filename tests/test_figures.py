"""fmnist/figures.py: the report's figures that a training run writes as PNG files."""

import pytest
from conftest import PNG_MAGIC, png_size


@pytest.mark.slow
def test_a_training_run_writes_the_report_figures(tiny_run):
    out, _, record = tiny_run
    assert set(record["figures"]) == {"confusion", "misclassified", "feature-maps", "confused-pair"}  # cnn: convs
    for name, path in record["figures"].items():
        assert path == str(out / "history" / f"tiny-{name}.png")
        assert open(path, "rb").read(8) == PNG_MAGIC
        width, height = png_size(path)
        assert width > 800 and height > 250


# Figures a beginner can read: drawn from synthetic inputs, so these need no training and run in a second.

def _png_of(fig):
    import io

    from PIL import Image

    from fmnist.figures import figure_png

    return Image.open(io.BytesIO(figure_png(fig)))


def _texts(fig):
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def _colour_bars(fig):
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def test_feature_maps_are_few_readable_labelled_and_have_a_colour_scale():
    import numpy as np

    from fmnist.figures import FEATURE_MAPS_CAPTION, plot_feature_maps

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    maps = [("conv2d", rng.random((26, 26, 32), dtype=np.float32)),
            ("conv2d_1", rng.random((24, 24, 64), dtype=np.float32))]
    fig = plot_feature_maps(image, maps)
    width, height = _png_of(fig).size
    assert width <= 2000 and width / height < 3.5  # readable on a page, not a strip 5 times wider than tall
    assert len(_colour_bars(fig)) == len(maps)
    texts = "\n".join(_texts(fig))
    assert FEATURE_MAPS_CAPTION.split()[0] in texts and "feature map" in texts.lower()
    assert "1st conv layer" in texts and "2nd conv layer" in texts and texts.count("filter ") >= 12
    assert "#" not in texts  # no bare channel numbers


def test_heat_maps_have_a_colour_bar_and_plain_titles():
    import numpy as np

    from fmnist.figures import HEAT_ENDS, plot_confused_pair, plot_explanation

    image = np.zeros((28, 28), np.uint8)
    heat = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    fig = plot_explanation(image, [(heat, "Shirt 60%"), (heat, "T-shirt/top 30%")], title="photo.png: Grad-CAM")
    assert len(_colour_bars(fig)) == 1
    texts = _texts(fig)
    assert any("Where the model found evidence" in t for t in texts) and "photo.png: Grad-CAM" in texts
    assert all(end in texts for end in HEAT_ENDS)
    fig = plot_confused_pair(np.zeros((4, 28, 28), np.uint8), np.array([6, 6, 0, 0]), np.array([0, 6, 6, 0]),
                             np.full(4, 0.5), [np.zeros((4, 28, 28)), np.ones((4, 28, 28))], classes=(6, 0),
                             class_names=[str(i) for i in range(10)], title="Shirt vs T-shirt", subtitle="conv2d_1")
    assert len(_colour_bars(fig)) == 1 and "conv2d_1" in _texts(fig)


def test_a_one_epoch_history_reads_as_one_point_per_split_in_two_colours():
    from fmnist.figures import plot_histories

    fig = plot_histories({"run": {"accuracy": [0.7], "val_accuracy": [0.75], "loss": [0.9], "val_loss": [0.8]}})
    accuracy = fig.axes[0]
    assert list(accuracy.get_xticks()) == [1]  # not 0.96 ... 1.04
    train, validation = accuracy.lines
    assert train.get_color() != validation.get_color() and train.get_marker() != validation.get_marker()
    assert [t.get_text() for t in accuracy.get_legend().get_texts()] == ["train", "validation"]
    assert fig._suptitle is not None and fig._suptitle.get_text()


def test_garments_are_drawn_light_on_dark_as_the_data_set_stores_them():
    import numpy as np

    from fmnist.figures import plot_predictions

    image = np.zeros((28, 28), np.uint8)
    image[10:18, 10:18] = 255  # a white square on black
    fig = plot_predictions(image[None], np.array([0]), np.array([0]), np.array([0.9]), ["a"] * 10, columns=1)
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.min() == 0  # the black background is there, not inverted to white


def test_probability_bars_colour_the_true_class_green_and_a_wrong_guess_red():
    import numpy as np

    from fmnist.figures import RIGHT, WRONG, plot_probabilities

    p = np.full((2, 10), 0.02)
    p[0, 3], p[1, 5] = 0.82, 0.82  # the first right (true 3), the second wrong (true 4)
    fig = plot_probabilities(np.zeros((2, 28, 28), np.uint8), np.array([3, 4]), p, [str(i) for i in range(10)],
                             columns=2)
    bar_axes = [ax for ax in fig.axes if ax.patches]
    assert len(bar_axes) == 2
    first, second = ([patch.get_facecolor() for patch in ax.patches] for ax in bar_axes)
    from matplotlib.colors import to_rgba

    assert first[3] == to_rgba(RIGHT) and second[5] == to_rgba(WRONG) and second[4] == to_rgba(RIGHT)


def test_the_readme_quotes_the_numbers_of_the_run_that_drew_the_figures_in_docs():
    """docs/make_figures.py writes docs/figures.json from the same run as the figures; the README quotes it."""
    import json

    from conftest import ROOT

    numbers = json.loads((ROOT / "docs" / "figures.json").read_text())
    readme = (ROOT / "README.md").read_text()

    def percent(share):
        return f"{share * 100:.2f} %"

    fast = numbers["fast"]
    assert f"({percent(fast['test_accuracy'])}, {fast['mistakes']} mistakes)" in readme
    assert "| `fast` | 93 % in 1–2 minutes: conv 16 → 48 → 96" in readme
    assert percent(fast["test_accuracy"]) in readme
    top, runner_up = fast["t_shirt"][:2]
    assert f"{top['class']} ({top['probability']:.1%}".replace("%", " %") in readme
    assert f"{runner_up['class']} ({runner_up['probability']:.1%}".replace("%", " %") in readme
    runs = numbers["batch_size"]["runs"]
    accuracies = [f"{runs[size]['test_accuracy'] * 100:.2f}" for size in ("64", "256", "512")]
    assert f"{accuracies[0]}, {accuracies[1]} and {accuracies[2]} % test accuracy" in readme
    for name in ("confusion", "misclassified", "feature-maps", "confused-pair", "fast-history", "tensorboard-images",
                 "tensorboard",
                 "t-shirt-explained", "batch-size"):
        assert (ROOT / "docs" / f"{name}.png").exists(), name

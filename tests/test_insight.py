"""Issue 4: the test report, its figures, TensorBoard images and hparams, evaluate, predict, sweeps, show-data."""

import csv
import json
import re

import numpy as np
import pytest
from conftest import ROOT, assert_clean_error, run_script

from fmnist import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.evaluation import confusion_matrix, most_confused, per_class_report, summarise

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def read_tensors(logdir):
    """{tag: [(step, value as a NumPy array)]} and {tag: plugin name} from the event files of one folder."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    values = {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)]
              for tag in tags}
    return values, {tag: accumulator.SummaryMetadata(tag) for tag in tags}


# ---------------------------------------------------------------------------------------------------------------
# The metrics, on data small enough to check by hand
# ---------------------------------------------------------------------------------------------------------------


def test_confusion_matrix_per_class_table_and_confused_pairs_by_hand():
    labels = np.array([0, 0, 0, 6, 6, 6, 6, 1])
    predicted = np.array([0, 0, 6, 0, 0, 6, 2, 1])
    matrix = confusion_matrix(labels, predicted)
    assert matrix.shape == (10, 10) and matrix.sum() == 8
    assert matrix[0, 0] == 2 and matrix[0, 6] == 1 and matrix[6, 0] == 2 and matrix[6, 2] == 1

    table = {row["class"]: row for row in per_class_report(matrix)}
    assert table["T-shirt/top"]["precision"] == pytest.approx(2 / 4)  # 2 of the 4 predicted T-shirts
    assert table["T-shirt/top"]["recall"] == pytest.approx(2 / 3)
    assert table["T-shirt/top"]["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert table["Shirt"]["support"] == 4 and table["Shirt"]["recall"] == pytest.approx(1 / 4)
    assert table["Bag"] == {"class": "Bag", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}

    pairs = most_confused(matrix)
    assert pairs[0] == {"true": "Shirt", "predicted": "T-shirt/top", "count": 2}
    assert {(p["true"], p["predicted"]) for p in pairs[1:]} == {("T-shirt/top", "Shirt"), ("Shirt", "Pullover")}


def test_summary_metrics_match_keras():
    import keras

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=500).astype("float32")
    labels = rng.integers(0, 10, size=500)
    summary = summarise(probabilities, labels)
    keras_loss = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    assert summary["loss"] == pytest.approx(float(keras_loss), rel=1e-4)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    top5.update_state(labels, probabilities)
    assert summary["top5_accuracy"] == pytest.approx(float(top5.result()), abs=1e-6)
    assert summary["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert np.trace(summary["confusion_matrix"]) == round(summary["accuracy"] * 500)


# ---------------------------------------------------------------------------------------------------------------
# After a training run: report, figures, TensorBoard
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_training_run_prints_and_records_the_test_report(tiny_run):
    out, proc, record = tiny_run
    test = record["test"]
    assert [row["class"] for row in test["per_class"]] == list(CLASS_NAMES)
    assert all(row["support"] == 1000 for row in test["per_class"])
    matrix = np.array(test["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) / 10_000 == pytest.approx(test["accuracy"])
    pairs = test["most_confused"]
    assert 1 <= len(pairs) <= 5 and [p["count"] for p in pairs] == sorted((p["count"] for p in pairs), reverse=True)
    first = pairs[0]
    t, p = CLASS_NAMES.index(first["true"]), CLASS_NAMES.index(first["predicted"])
    assert first["count"] == matrix[t, p] == max(matrix[i, j] for i in range(10) for j in range(10) if i != j)
    assert f"{first['true']} → {first['predicted']}: {first['count']}" in proc.stdout
    assert "precision" in proc.stdout and "Shirt" in proc.stdout


@pytest.mark.slow
def test_a_training_run_writes_the_report_figures(tiny_run):
    out, _, record = tiny_run
    assert set(record["figures"]) == {"confusion", "misclassified", "feature-maps", "confused-pair"}  # cnn: convs
    for name, path in record["figures"].items():
        assert path == str(out / "history" / f"tiny-{name}.png")
        assert open(path, "rb").read(8) == PNG_MAGIC
        width, height = png_size(path)
        assert width > 800 and height > 250


@pytest.mark.slow
def test_tensorboard_has_epoch_images_test_figures_and_hparams(tiny_run):
    from tensorboard.plugins.hparams import metadata as hparams_metadata
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, _, record = tiny_run
    logs = out / "tensorboard_logs" / "tiny"

    epoch_images, meta = read_tensors(logs / "images")
    assert set(epoch_images) == {"validation/predictions", "validation/confusion_matrix"}
    keras_steps = [step for step, _ in read_tensors(logs / "train")[0]["epoch_loss"]]
    assert len(keras_steps) == record["epochs_run"]
    for tag, events in epoch_images.items():
        assert meta[tag].plugin_data.plugin_name == "images"
        assert [step for step, _ in events] == keras_steps  # each epoch's pictures line up with its scalars
        width, height, png = events[0][1]
        assert png.startswith(PNG_MAGIC) and int(width) > 300 and int(height) > 300

    test_images, _ = read_tensors(logs / "test")
    assert set(test_images) == {"test/confusion", "test/misclassified", "test/feature-maps", "test/confused-pair"}
    assert {events[0][0] for events in test_images.values()} == {keras_steps[-1]}  # at the last epoch
    width, height, _ = test_images["test/confusion"][0][1]
    assert int(width) > int(height) > 300  # two panels side by side

    root, meta = read_tensors(logs)
    assert meta[hparams_metadata.SESSION_START_INFO_TAG].plugin_data.plugin_name == "hparams"
    content = meta[hparams_metadata.SESSION_START_INFO_TAG].plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model"].string_value == "cnn"
    assert hparams["batch_size"].number_value == record["hyperparameters"]["batch_size"]
    assert hparams["limit"].number_value == 1000
    assert float(root["test/accuracy"][0][1]) == pytest.approx(record["test"]["accuracy"])


# ---------------------------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_reproduces_the_report_and_never_overwrites(tiny_run, tmp_path):
    out, _, record = tiny_run
    model = out / "models" / "tiny.keras"
    first = run_script("fashion_mnist.py", "evaluate", model, "--out", tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "tiny-evaluation.json").read_text())
    assert report["test"]["accuracy"] == pytest.approx(record["test"]["accuracy"], abs=2e-3)
    assert report["test"]["per_class"][0]["class"] == "T-shirt/top"
    for name in ("confusion", "misclassified", "feature-maps", "confused-pair"):
        assert report["figures"][name] == str(tmp_path / f"tiny-{name}.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    from fmnist.report import evaluate_saved_model  # the same command again, in this process to save time

    assert evaluate_saved_model(model, tmp_path) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before
    assert (tmp_path / "tiny-2-evaluation.json").exists() and (tmp_path / "tiny-2-confusion.png").exists()


@pytest.mark.slow
def test_evaluate_takes_a_compatible_model_from_elsewhere(tmp_path):
    import keras

    foreign = keras.Sequential([keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="softmax")])
    foreign.save(tmp_path / "foreign.keras")
    from fmnist.report import evaluate_saved_model

    assert evaluate_saved_model(tmp_path / "foreign.keras", out=None) == 0  # default: next to the model
    report = json.loads((tmp_path / "foreign-evaluation.json").read_text())
    assert set(report["figures"]) == {"confusion", "misclassified", "confused-pair"}  # no convs, no feature maps
    assert 0 <= report["test"]["accuracy"] <= 1 and sum(r["support"] for r in report["test"]["per_class"]) == 10_000


@pytest.mark.parametrize("tta, copies", [("none", 1), ("flip", 2), ("flip-shift", 6)])
def test_tta_averages_the_prediction_over_mirrored_and_shifted_copies(tta, copies):
    import keras

    from fmnist.config import TTA_CHOICES
    from fmnist.data import load_fashion_mnist
    from fmnist.evaluation import TTA_VIEWS, predict_probabilities

    assert tuple(TTA_VIEWS) == TTA_CHOICES  # the flag offers exactly what the evaluation does
    keras.utils.set_random_seed(0)  # a dense layer over the raw pixels: every copy gets a different prediction
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    images = load_fashion_mnist().x_test[:50].astype("float32")
    mirrors = images[:, :, ::-1]
    black = np.zeros((50, 28, 1), "float32")  # a column, coming in on the side the image moves away from
    flip_shift = []
    for image in (images, mirrors):
        flip_shift += [image, np.concatenate([black, image[:, :, :-1]], axis=2),  # a pixel right
                       np.concatenate([image[:, :, 1:], black], axis=2)]  # a pixel left
    expected_copies = {1: [images], 2: [images, mirrors], 6: flip_shift}[copies]
    expected = np.mean([model.predict(copy, verbose=0) for copy in expected_copies], axis=0)
    averaged = predict_probabilities(model, images, tta=tta)
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    if copies > 1:
        assert not np.allclose(averaged, predict_probabilities(model, images), atol=1e-3)


@pytest.mark.slow
def test_incompatible_or_broken_models_are_refused(tmp_path):
    import keras

    from fmnist.evaluation import load_model

    rgb = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    rgb.save(tmp_path / "rgb.keras")
    with pytest.raises(UserError, match=r"input of shape .*32, 32, 3"):
        load_model(tmp_path / "rgb.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a loadable .keras model"):
        load_model(tmp_path / "junk.keras")
    assert_clean_error(run_script("fashion_mnist.py", "evaluate", tmp_path / "none.keras"), 1, "file not found")


# ---------------------------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def confident_test_images(tiny_run):
    """Test images the tiny model classifies with a clear margin, its predictions, and the loaded model."""
    from fmnist.data import load_fashion_mnist
    from fmnist.evaluation import load_model, predict_probabilities

    out, _, _ = tiny_run
    model = load_model(out / "models" / "tiny.keras")
    images = load_fashion_mnist().x_test[:300]
    probabilities = predict_probabilities(model, images)
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    confident = np.flatnonzero(top2[:, 1] - top2[:, 0] > 0.5)
    # one per predicted class where possible, so that different kinds of garment are checked
    _, first = np.unique(probabilities[confident].argmax(1), return_index=True)
    chosen = confident[first][:6]
    assert len(chosen) >= 4
    return images[chosen], probabilities[chosen].argmax(1), model


def product_photo(image, seed):
    """The garment small and off-centre, dark on a noisy off-white 400x300 background, in colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    garment = np.asarray(Image.fromarray(255 - image).resize((112, 112), Image.Resampling.BICUBIC), dtype=float)
    photo = np.full((300, 400), 245.0) + rng.normal(0, 3, (300, 400))
    photo[40:152, 200:312] = np.minimum(photo[40:152, 200:312], garment)
    return Image.fromarray(np.stack([photo, photo * 0.98, photo * 0.95], -1).clip(0, 255).astype(np.uint8))


@pytest.mark.slow
def test_dataset_images_come_back_unchanged_and_resized_ones_close(confident_test_images):
    from PIL import Image

    from fmnist.ship.predict import to_dataset_form

    images, _, _ = confident_test_images
    differences = []
    for image in images:
        assert np.array_equal(to_dataset_form(image), image)
        assert np.array_equal(to_dataset_form(255 - image), image)  # dark on light is inverted back
        big = np.asarray(Image.fromarray(image).resize((200, 200), Image.Resampling.LANCZOS))
        differences.append(np.abs(to_dataset_form(big).astype(int) - image).mean())
        photo = np.asarray(product_photo(image, seed=0).convert("L"))
        differences.append(np.abs(to_dataset_form(photo).astype(int) - image).mean())
    assert np.mean(differences) < 20  # out of 255: resampling blurs a little, the garment stays in place


@pytest.mark.slow
def test_predict_agrees_with_the_model_on_pngs_of_any_size_and_colour(confident_test_images, tiny_run, tmp_path):
    from PIL import Image

    images, expected, _ = confident_test_images
    files, wanted = [], []
    for i, (image, label) in enumerate(zip(images, expected, strict=True)):
        for size in (28, 56, 200):
            picture = Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS)
            files.append(tmp_path / f"{i}-{size}.png")
            picture.save(files[-1])
            wanted.append(label)
        inverted = Image.fromarray(255 - image).resize((120, 120), Image.Resampling.LANCZOS).convert("RGB")
        files.append(tmp_path / f"{i}-inverted.jpg")  # dark on white, as a colour JPEG
        inverted.save(files[-1], quality=95)
        files.append(tmp_path / f"{i}-photo.jpg")
        product_photo(image, seed=i).save(files[-1], quality=90)
        wanted += [label, label]
    missing, not_an_image = tmp_path / "missing.png", tmp_path / "notes.png"
    not_an_image.write_text("hello")

    out, _, _ = tiny_run
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", files[0], missing, *files[1:],
                      not_an_image, "--json")
    assert proc.returncode == 1  # some files failed, the others were still predicted
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 2
    results = {r["file"]: r for r in json.loads(proc.stdout)}
    assert "file not found" in results[str(missing)]["error"] and "error" in results[str(not_an_image)]
    for path, label in zip(files, wanted, strict=True):
        top = results[str(path)]["top"]
        assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
        assert top[0]["class"] == CLASS_NAMES[label], path.name


@pytest.mark.slow
def test_predict_prints_the_top_3_as_text(confident_test_images, tiny_run, tmp_path):
    from PIL import Image

    images, expected, _ = confident_test_images
    Image.fromarray(images[0]).save(tmp_path / "one.png")
    out, _, _ = tiny_run
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", tmp_path / "one.png")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{tmp_path / 'one.png'}: {CLASS_NAMES[expected[0]]} ") and line.count("%") == 3


def _png_of_black(path, width, height):
    """A PNG of width x height black pixels, written row by row: a few KB on disk however large it claims to be."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte 0, then one grey byte a pixel
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_near_blank_and_blank_pictures_take_the_dataset_form():
    from fmnist.ship.predict import to_dataset_form

    speck = np.zeros((1000, 1000), np.uint8)
    speck[500, 500] = 100  # the blur rounds this away: before, rows.min() of nothing raised ValueError
    assert to_dataset_form(speck).shape == (28, 28)
    assert not to_dataset_form(np.zeros((300, 200), np.uint8)).any()
    line = np.zeros((1, 5000), np.uint8)
    line[0, 10:20] = 200
    assert to_dataset_form(line).shape == (28, 28)


@pytest.mark.slow
def test_predict_survives_hostile_and_unlucky_files(confident_test_images, tiny_run, tmp_path):
    """A decompression bomb, an image just over the pixel limit, a PostScript file named .png and a near-blank
    picture each get one line (or a prediction); every good file is still predicted, and the exit code is 1."""
    from PIL import Image

    images, expected, _ = confident_test_images
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    bomb = _png_of_black(tmp_path / "bomb.png", 13_500, 13_500)  # over twice Pillow's limit: it raised
    big = _png_of_black(tmp_path / "big.png", 7_000, 6_000)  # 42 megapixels: under Pillow's limit, over ours
    eps = tmp_path / "drawing.png"
    eps.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n")
    speck = np.zeros((1000, 1000), np.uint8)
    speck[500, 500] = 100
    near_blank = tmp_path / "near-blank.png"
    Image.fromarray(speck).save(near_blank)
    good_jpeg = tmp_path / "good.jpg"
    Image.fromarray(images[1]).save(good_jpeg, quality=95)

    out, _, _ = tiny_run
    proc = run_script("fashion_mnist.py", "predict", out / "models" / "tiny.keras", bomb, good, big, eps,
                      near_blank, good_jpeg, "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "DecompressionBomb" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, proc.stderr[-2000:]
    results = {r["file"]: r for r in json.loads(proc.stdout)}
    assert "megapixels" in results[str(bomb)]["error"] and "megapixels" in results[str(big)]["error"]
    assert "PNG, JPEG, BMP, GIF or WebP" in results[str(eps)]["error"]
    assert len(results[str(near_blank)]["top"]) == 3
    assert results[str(good)]["top"][0]["class"] == CLASS_NAMES[expected[0]]
    assert results[str(good_jpeg)]["top"][0]["class"] == CLASS_NAMES[expected[1]]


# ---------------------------------------------------------------------------------------------------------------
# Sweeps
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_trains_each_value_and_compares_them(tmp_path):
    proc = run_script("fashion_mnist.py", "--sweep", "batch_size=64,128", "--limit", 300, "--epochs", 1,
                      "--val-fraction", 0.02,
                      "--out", tmp_path, "--run-name", "sw")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 5 and 3 steps an epoch, run in calls of 8 steps: each progress bar still ends at its epoch's length.
    bars = [(int(done), int(total)) for done, total in re.findall(r"(?<!\d)(\d+)/(\d+)(?!\d)", proc.stdout)]
    assert {(5, 5), (3, 3)} <= set(bars) and all(done <= total for done, total in bars)
    history = tmp_path / "history"
    records = [json.loads((history / f"sw-batch_size{bs}.json").read_text()) for bs in (64, 128)]
    assert [r["hyperparameters"]["batch_size"] for r in records] == [64, 128]
    assert len({r["hyperparameters"]["seed"] for r in records}) == 1

    rows = list(csv.DictReader((history / "sw-results.csv").open()))
    assert [row["batch_size"] for row in rows] == ["64", "128"]
    for row, record in zip(rows, records, strict=True):
        assert float(row["test_accuracy"]) == pytest.approx(record["test"]["accuracy"], abs=1e-4)
    table = (history / "sw-results.md").read_text()
    assert table.splitlines()[2].startswith("| run | status | batch_size | epochs |")
    assert all(line in proc.stdout for line in table.splitlines()[2:])  # printed as well as saved
    assert "| sw-batch_size128 | completed | 128 | 1 |" in table

    # graph_history.py draws the very same figure from the saved pickles
    figure = history / "sw-compare.png"
    assert figure.read_bytes().startswith(PNG_MAGIC)
    again = tmp_path / "again.png"
    title = "Sweep sw: batch_size = 64, 128"
    replot = run_script("graph_history.py", history / "sw-batch_size64.pkl", history / "sw-batch_size128.pkl",
                        "--validation-only", "--title", title, "--out", again)
    assert replot.returncode == 0, replot.stderr
    assert again.read_bytes() == figure.read_bytes()
    assert "graph_history.py" in proc.stdout and "--validation-only" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "sweep, message",
    [
        ("colour=red,blue", "'colour' is not a hyperparameter"),
        ("batch_size=64,0", "batch_size=0"),
        ("batch_size=64,abc", "not a valid int"),
        ("model=cnn,vgg", "'vgg' is not one of"),
        ("batch_size", "is not NAME=V1,V2"),
        ("epochs=1,1", "lists a value twice"),
    ],
)
def test_a_bad_sweep_exits_2_before_training(sweep, message):
    assert_clean_error(run_script("fashion_mnist.py", "--sweep", sweep), 2, message)


@pytest.mark.slow
def test_the_same_hyperparameter_cannot_be_swept_twice():
    proc = run_script("fashion_mnist.py", "--sweep", "epochs=1,2", "--sweep", "epochs=3")
    assert_clean_error(proc, 2, "swept twice")


def test_sweep_grid_is_the_product_of_all_sweeps():
    from fashion_mnist import DEFAULTS as defaults
    from fmnist.config import parse_config

    config, grid = parse_config(["--sweep", "batch-size=64,256", "--sweep", "learning_rate=1e-3,3e-3,0.01"],
                                defaults)
    assert len(grid) == 6 and grid[0] == {"batch_size": 64, "learning_rate": 0.001}
    assert {(g["batch_size"], g["learning_rate"]) for g in grid} == {(b, lr) for b in (64, 256)
                                                                      for lr in (0.001, 0.003, 0.01)}
    assert parse_config([], defaults)[1] == []


# ---------------------------------------------------------------------------------------------------------------
# show-data, and the commands' help
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_show_data_writes_a_labelled_sprite_and_a_tensorboard_image(tmp_path):
    proc = run_script("fashion_mnist.py", "show-data", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sprite = tmp_path / "fashion-mnist-samples.png"
    width, height = png_size(sprite)
    assert width > 1000 and height > 800
    images, _ = read_tensors(tmp_path / "tensorboard_logs" / "dataset")
    assert list(images) == ["dataset/samples"]

    before = sprite.read_bytes()
    from fmnist.cli import show_data

    show_data(tmp_path)
    assert sprite.read_bytes() == before  # never replaced: the second sprite takes a suffix
    assert (tmp_path / "fashion-mnist-samples-2.png").exists()
    assert (tmp_path / "tensorboard_logs" / "dataset-2").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "show-data"])
def test_command_help_answers_without_tensorflow(command):
    import subprocess
    import sys

    code = (f"import runpy, sys; sys.argv = ['fashion_mnist.py', '{command}', '--help']\n"
            "try: runpy.run_path('fashion_mnist.py', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"fashion_mnist.py {command}" in proc.stdout and proc.stdout.strip().endswith("TF_NOT_LOADED")

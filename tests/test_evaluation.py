"""fmnist/evaluation.py: the metrics on data small enough to check by hand, test-time augmentation, and loading a
model for evaluation (incompatible or broken ones refused)."""

import numpy as np
import pytest
from conftest import assert_clean_error, run_script

from fmnist.errors import UserError
from fmnist.evaluation import confusion_matrix, most_confused, per_class_report, summarise


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


@pytest.mark.parametrize("tta, copies", [("none", 1), ("flip", 2), ("flip-shift", 6), ("flip-shift-xy", 10)])
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
    # black, coming in on the side the image moves away from
    column, row = np.zeros((50, 28, 1), "float32"), np.zeros((50, 1, 28), "float32")
    flip_shift, flip_shift_xy = [], []
    for image in (images, mirrors):
        sideways = [image, np.concatenate([column, image[:, :, :-1]], axis=2),  # a pixel right
                    np.concatenate([image[:, :, 1:], column], axis=2)]  # a pixel left
        flip_shift += sideways
        flip_shift_xy += [*sideways, np.concatenate([row, image[:, :-1]], axis=1),  # a pixel down
                          np.concatenate([image[:, 1:], row], axis=1)]  # a pixel up
    expected_copies = {1: [images], 2: [images, mirrors], 6: flip_shift, 10: flip_shift_xy}[copies]
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

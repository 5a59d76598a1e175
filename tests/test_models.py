"""fmnist/models.py: every architecture builds and takes a training step; the baseline, ResNet-18 and ResNet-20 have
their published shapes and sizes, and ResNet-20 learns with its recipe."""

import json

import numpy as np
import pytest
from conftest import run_script

from fmnist.models import MODELS, build_model
from fmnist.training import compile_model


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_model_builds_and_takes_a_training_step(name):
    import keras

    keras.utils.set_random_seed(0)
    model = compile_model(build_model(name), keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28, 1)).astype("float32")
    labels = np.arange(8) % 10
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (8, 10)
    assert probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)


BASELINE_GUARD = ("the cnn is the published baseline, which every comparison here is measured against; keep it "
                  "as it is, and add a new model instead: a builder in fmnist/models.py, listed in MODELS")


def test_cnn_is_the_baseline_architecture():
    model = build_model("cnn")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout",
                     "Dense"], BASELINE_GUARD
    assert model.layers[6].units == 400, BASELINE_GUARD
    assert model.count_params() == 3_709_626, BASELINE_GUARD


def test_fast_and_balanced_pool_before_batch_norm_and_best_after():
    def kinds(name):
        return [type(layer).__name__ for layer in build_model(name).layers]

    pooled_first = ["Conv2D", "MaxPooling2D", "BatchNormalization", "ReLU"]
    unpooled = ["Conv2D", "BatchNormalization", "ReLU"]
    for name in ("fast", "balanced"):
        assert kinds(name) == ["Rescaling", *pooled_first, *pooled_first, *unpooled, "Flatten", "Dense", "Dense"]
    assert kinds("best") == ["Rescaling", *unpooled, "MaxPooling2D", *unpooled * 2, "MaxPooling2D", *unpooled * 2,
                             "Flatten", "Dropout", "Dense", "Dropout", "Dense"]
    assert build_model("fast").count_params() == build_model("balanced").count_params()  # one net, two recipes


def test_pooling_before_batch_norm_and_relu_computes_the_same_at_inference():
    """Why `fast` may pool first: max-pooling commutes with a per-channel increasing map, which batch norm with a
    positive scale and ReLU are (at inference; in training the batch statistics are those of what it sees)."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    norm = keras.layers.BatchNormalization()
    norm.build(x.shape)
    norm.set_weights([rng.uniform(0.5, 2, 3), rng.normal(size=3), rng.normal(size=3), rng.uniform(0.5, 2, 3)])
    pool, relu = keras.layers.MaxPooling2D(2), keras.layers.ReLU()
    after = pool(relu(norm(x, training=False)))
    before = relu(norm(pool(x), training=False))
    np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-6)
    norm.set_weights([-np.ones(3), *norm.get_weights()[1:]])  # a negative scale reverses the order: not the same
    assert not np.allclose(pool(relu(norm(x, training=False))), relu(norm(pool(x), training=False)))


def test_resnet18_has_the_published_size_and_scales_its_width():
    full = build_model("resnet18")
    # 11.2 M parameters as in ResNet-18, minus the 7x7 RGB stem and the 1000-way head.
    assert 11_000_000 < full.count_params() < 11_300_000
    assert sum(type(layer).__name__ == "Add" for layer in full.layers) == 8  # [2, 2, 2, 2] basic blocks
    small = build_model("resnet18", resnet_width=16)
    assert small.count_params() < full.count_params() / 10


def test_resnet20_has_the_published_size():
    model = build_model("resnet20")
    assert 260_000 < model.count_params() < 290_000  # 0.27 M as in He et al.'s CIFAR table, plus 1x1 shortcuts
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == 9  # 3 stages of 3 basic blocks
    assert [layer.output.shape[1:] for layer in model.layers if type(layer).__name__ == "Add"][::3] == [
        (28, 28, 16), (14, 14, 32), (7, 7, 64)]


@pytest.mark.slow
def test_resnet20_learns_fashion_mnist_with_its_recipe(tmp_path):
    """Its recipe (random erasing, AdamW, test-time copies) on a sixth of the images for 2 epochs: chance is 10 %;
    this scored 79 %, so 70 % leaves room for another CPU's rounding, and a net that did not learn stays far below."""
    proc = run_script("fashion_mnist.py", "--model", "resnet20", "--limit", 10_000, "--epochs", 2,
                      "--warmup-epochs", 0.3, "--out", tmp_path, "--run-name", "rn20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "history" / "rn20.json").read_text())
    assert record["hyperparameters"]["augment"] == "flip-shift-erase" and record["hyperparameters"]["batch_size"] == 128
    assert record["test"]["accuracy"] >= 0.70, record["test"]

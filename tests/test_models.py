import numpy as np
import pytest

from fmnist.architectures import MODELS, build_model
from fmnist.training import compile_model, use_fused_adam_kernel


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


@pytest.mark.parametrize("adamw", [False, True])
def test_fused_adam_kernel_trains_exactly_like_keras_adam(adamw, tmp_path):
    import keras

    def optimizer():
        rate = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=4, warmup_target=1e-2, warmup_steps=2)
        return keras.optimizers.AdamW(rate, weight_decay=0.05) if adamw else keras.optimizers.Adam(rate)

    keras.utils.set_random_seed(0)
    initial = build_model("lenet").get_weights()  # no dropout, so both models take the same steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 28, 28, 1)).astype("float32")
    labels = rng.integers(0, 10, size=16)
    trained = []
    for fused in (False, True):
        model = build_model("lenet")
        model.set_weights(initial)
        compile_model(model, use_fused_adam_kernel(optimizer()) if fused else optimizer(), steps_per_execution=1)
        for _ in range(3):
            model.train_on_batch(images, labels)
        trained.append(model)
    moved = max(np.abs(w - w0).max() for w, w0 in zip(trained[0].get_weights(), initial, strict=True))
    assert moved > 1e-3  # the steps changed the weights, by far more than the tolerances below
    for keras_weight, fused_weight in zip(trained[0].get_weights(), trained[1].get_weights(), strict=True):
        # Float rounding only: a weight whose gradient is near zero can differ by 1 % of a step (rate 1e-2).
        np.testing.assert_allclose(fused_weight, keras_weight, atol=1e-4)
        assert np.abs(fused_weight - keras_weight).mean() < 1e-7
    # Still Keras's own class, so the saved model loads, compiled, with plain Keras.
    trained[1].save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    assert type(loaded.optimizer) is type(optimizer())


def test_cnn_is_the_seed_003_architecture():
    model = build_model("cnn")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout",
                     "Dense"]
    assert model.layers[6].units == 400
    assert model.count_params() == 3_709_626


def test_resnet18_has_the_published_size_and_scales_its_width():
    full = build_model("resnet18")
    # 11.2 M parameters as in ResNet-18, minus the 7x7 RGB stem and the 1000-way head.
    assert 11_000_000 < full.count_params() < 11_300_000
    assert sum(type(layer).__name__ == "Add" for layer in full.layers) == 8  # [2, 2, 2, 2] basic blocks
    small = build_model("resnet18", resnet_width=16)
    assert small.count_params() < full.count_params() / 10

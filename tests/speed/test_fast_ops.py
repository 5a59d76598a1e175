"""fmnist/speed/fast_ops.py: the fused Adam update, byte-mask Dropout and fused BatchNorm train like Keras's own
and save as them; without the Keras internals they use, training falls back to Keras's ops."""

import numpy as np
import pytest

from fmnist.models import build_model
from fmnist.speed.fast_ops import use_byte_mask_dropout, use_fused_adam_kernel, use_fused_batch_norm
from fmnist.training import compile_model


@pytest.mark.slow
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


@pytest.mark.parametrize("rate", [0.25, 0.2])
def test_byte_mask_dropout_drops_at_the_rate_and_keeps_the_mean(rate, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = use_byte_mask_dropout(keras.Sequential([keras.Input((100_000,)), keras.layers.Dropout(rate)]))
    ones = np.ones((4, 100_000), "float32")
    first, second = (np.asarray(model(ones, training=True)) for _ in range(2))
    dropped = round(rate * 256) / 256  # 0.25 exactly; 0.2 becomes 51/256
    assert abs((first == 0).mean() - dropped) < 0.003  # 400,000 draws: the standard error is 0.0007
    np.testing.assert_allclose(np.unique(first[first > 0]), 1 / (1 - dropped), rtol=1e-6)
    assert abs(first.mean() - 1) < 0.005
    assert not np.array_equal(first, second)  # a new mask at every call
    np.testing.assert_array_equal(model(ones, training=False), ones)
    # The saved model is plain Keras: it loads without this package.
    model.save(tmp_path / "dropout.keras")
    loaded = keras.saving.load_model(tmp_path / "dropout.keras")
    assert type(loaded.layers[0]) is keras.layers.Dropout and loaded.layers[0].rate == rate


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_trains_like_keras_batch_norm_and_saves_as_it(policy, tmp_path):
    import keras
    import tensorflow as tf

    def net():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, use_bias=False),
                                 keras.layers.BatchNormalization(momentum=0.9), keras.layers.Flatten(),
                                 keras.layers.Dense(2, dtype="float32")])

    keras.mixed_precision.set_global_policy(policy)
    try:
        plain, fused = net(), use_fused_batch_norm(net())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    results = []
    for model in (plain, fused):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x, training=True) ** 2)
        gradients = tape.gradient(loss, model.trainable_variables)
        norm = model.layers[1]
        results.append([loss.numpy(), *(g.numpy() for g in gradients), norm.moving_mean.numpy(),
                        norm.moving_variance.numpy()])
    tolerance = 1e-5 if policy == "float32" else 2e-2  # bfloat16 keeps 8 bits of mantissa
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance * np.abs(a).max())
    assert np.abs(results[0][-1] - 0.9).max() > 1e-3  # the moving statistics moved, the same way in both
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-2, atol=1e-2)
    fused.save(tmp_path / "bn.keras")
    assert type(keras.saving.load_model(tmp_path / "bn.keras").layers[1]) is keras.layers.BatchNormalization


@pytest.mark.slow
def test_fast_ops_check_the_keras_internals_they_use_and_fall_back_without_them(monkeypatch, capsys):
    import keras
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    from fmnist.speed import fast_ops

    fast_ops.missing_keras_internals.cache_clear()
    assert fast_ops.missing_keras_internals() == ""  # this Keras has them all: the fast ops are used
    model, optimizer, replaced = fast_ops.use_fast_ops(build_model("cnn"), keras.optimizers.Adam(1e-3))
    assert replaced.startswith("Adam's update, Dropout (") and "--no-fast-ops" in replaced  # the run prints it
    assert "update_step" in vars(optimizer) and any("call" in vars(layer) for layer in model.layers)

    # A Keras release that renamed one of them: the check names it...
    monkeypatch.delattr(BaseOptimizer, "_get_variable_index")
    fast_ops.missing_keras_internals.cache_clear()
    assert fast_ops.missing_keras_internals() == "Adam._get_variable_index"
    monkeypatch.undo()
    fast_ops.missing_keras_internals.cache_clear()

    # ...and training goes on with Keras's own ops, after a one-line warning.
    monkeypatch.setattr(fast_ops, "missing_keras_internals", lambda: "Adam._velocities")
    model, optimizer, replaced = fast_ops.use_fast_ops(build_model("cnn"), keras.optimizers.Adam(1e-3))
    assert "Adam._velocities" in capsys.readouterr().err and replaced.startswith("none")
    assert "update_step" not in vars(optimizer) and not any("call" in vars(layer) for layer in model.layers)
    compile_model(model, optimizer)
    images = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28, 1)).astype("float32")
    assert np.isfinite(model.train_on_batch(images, np.arange(8) % 10, return_dict=True)["loss"])

"""Faster stand-ins for three of Keras's training ops, for CPUs: the Adam update, the dropout mask and batch norm.

Each replaces one method of one object, not a class, so a saved model still names plain Keras classes (Adam,
AdamW, Dropout) and loads with plain Keras, without this package.

They lean on private attributes of Keras 3.15 (the optimizer's `_get_variable_index`, `_momentums` and
`_velocities`; the dropout layer's `seed_generator`; the model's `_flatten_layers`). `use_fast_ops` checks them
once and falls back to Keras's own ops, with a warning, where a Keras release has renamed one; `--no-fast-ops`
switches them off by choice.
"""

import functools
import sys
import types

DROPOUT_LEVELS = 256  # one random byte per value: the rate is rounded to the nearest 1/256


def use_fast_ops(model, optimizer):
    """`model` and `optimizer` with the fast ops where this Keras has what they rely on, else unchanged, and one
    line that says which of Keras's ops were replaced, for the run's output."""
    import keras

    missing = missing_keras_internals()
    if missing:
        print(f"warning: Keras {keras.__version__} has no {missing}, which fmnist/speed/fast_ops.py relies on; "
              "training with Keras's own Adam, Dropout and BatchNormalization ops (slower)", file=sys.stderr)
        return model, optimizer, "none (this Keras lacks what they need)"
    use_fused_batch_norm(use_byte_mask_dropout(model))
    calls = {getattr(layer.call, "__func__", None) for layer in _all_layers(model)}
    replaced = [f"{type(optimizer).__name__}'s update"] + [
        name for name, call in (("Dropout", _byte_mask_dropout_call), ("BatchNormalization", _fused_batch_norm_call))
        if call in calls]
    use_fused_adam_kernel(optimizer)
    return model, optimizer, f"{', '.join(replaced)} (fmnist/speed/fast_ops.py; --no-fast-ops trains with Keras's own)"


@functools.cache
def missing_keras_internals():
    """"" when the private Keras attributes the fast ops use are all there; else the first missing one."""
    import keras
    import numpy as np

    optimizer = keras.optimizers.Adam()
    optimizer.build([keras.Variable(np.zeros(1, "float32"))])
    dropout = keras.layers.Dropout(0.5)
    norm = keras.layers.BatchNormalization()
    norm.build((None, 2, 2, 1))
    needed = [(optimizer, "_get_variable_index"), (optimizer, "_momentums"), (optimizer, "_velocities"),
              (dropout, "seed_generator"), (dropout, "noise_shape"), (keras.Sequential(), "_flatten_layers")]
    needed += [(norm, name) for name in ("moving_mean", "moving_variance", "gamma", "beta", "renorm", "synchronized")]
    return next((f"{type(owner).__name__}.{name}" for owner, name in needed if not hasattr(owner, name)), "")


def _all_layers(model):
    """Every layer of `model`, those of nested models too."""
    return model._flatten_layers(include_self=False)  # noqa: SLF001 - checked by missing_keras_internals


def use_fused_adam_kernel(optimizer):
    """Have a Keras Adam or AdamW update each weight with TensorFlow's fused Adam kernel.

    Keras 3 writes Adam's update as a chain of about ten element-wise ops, each a pass through memory over every
    weight. TensorFlow's ResourceApplyAdam does the same arithmetic in one pass (tests/test_models.py checks the
    two against each other): on 2 CPU cores the `cnn` trains 15 to 20 % faster at batch 64, and 5 % at batch 512
    (benchmarks/train_speed.py). AdamW's weight decay is applied before update_step, so it is unchanged.
    """
    optimizer.update_step = types.MethodType(_fused_adam_update_step, optimizer)
    return optimizer


def _fused_adam_update_step(self, gradient, variable, learning_rate):
    """keras.optimizers.Adam.update_step (without amsgrad), as one ResourceApplyAdam op."""
    import tensorflow as tf

    def as_variable_dtype(value):
        return tf.cast(value, variable.dtype)

    index = self._get_variable_index(variable)
    step = as_variable_dtype(self.iterations + 1)
    beta_1, beta_2 = as_variable_dtype(self.beta_1), as_variable_dtype(self.beta_2)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
        beta1_power=beta_1**step, beta2_power=beta_2**step, lr=as_variable_dtype(learning_rate), beta1=beta_1,
        beta2=beta_2, epsilon=as_variable_dtype(self.epsilon), grad=as_variable_dtype(gradient))


def use_byte_mask_dropout(model):
    """Have every Dropout layer of `model` draw its mask from one random byte per value.

    Keras draws a random float per value, and TensorFlow's generator spends as long on each float as on 32
    random bits: for the `cnn` at batch 64 that was 1.5 ms of a 16 ms training step (profiled on 2 CPU cores).
    A byte per value draws a quarter of the bits. The rate is then rounded to the nearest 1/256 (0.2 becomes
    51/256 = 0.199), which is finer than Keras's own draw under mixed_bfloat16: its bfloat16 uniform numbers
    take only 128 values. The kept values are scaled by 1 / (1 - the rounded rate), so the mean is unchanged.
    """
    import keras

    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Dropout) and layer.noise_shape is None and 0 < layer.rate < 1:
            layer.call = types.MethodType(_byte_mask_dropout_call, layer)
    return model


def _byte_mask_dropout_call(self, inputs, training=False):
    """keras.layers.Dropout.call, with the keep mask drawn as one random byte per value."""
    import tensorflow as tf

    if not training:
        return inputs
    # The layer's own seed generator, as Keras uses it: seeded by --seed, and reproducible with --deterministic.
    seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
    count = tf.size(inputs)
    words = tf.random.stateless_uniform([(count + 3) // 4], seed, minval=None, maxval=None, dtype=tf.int32)
    random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:count]
    dropped = round(self.rate * DROPOUT_LEVELS)
    keep = tf.reshape(random_bytes, tf.shape(inputs)) >= tf.constant(dropped, tf.uint8)
    scale = tf.cast(DROPOUT_LEVELS / (DROPOUT_LEVELS - dropped), inputs.dtype)
    return tf.where(keep, inputs * scale, tf.zeros((), inputs.dtype))


def use_fused_batch_norm(model):
    """Have every BatchNormalization layer of `model` train with TensorFlow's fused kernel on 4-D inputs.

    Keras 3 computes batch norm as separate ops (the moments, then the normalisation, each a pass over the
    activations, and as many again backwards); FusedBatchNormV3, which oneDNN runs on CPUs, does each direction in
    one pass: 7x faster on a 512x28x28x32 batch on 2 cores (docs/experiments.md). Inference is unchanged.
    """
    import keras

    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.renorm and not layer.synchronized:
            layer.call = types.MethodType(_fused_batch_norm_call, layer)
    return model


def _fused_batch_norm_call(self, inputs, training=None, mask=None):
    """keras.layers.BatchNormalization.call, training on channels-last images with FusedBatchNormV3."""
    import tensorflow as tf

    if not (training and self.trainable and mask is None and len(inputs.shape) == 4 and self.axis in (-1, 3)):
        return type(self).call(self, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
    offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(inputs, scale, offset, epsilon=self.epsilon,
                                                               is_training=True)
    # The kernel returns the variance with Bessel's correction; Keras keeps the plain batch variance.
    count = tf.cast(tf.size(inputs) // channels, tf.float32)
    variance = variance * (count - 1) / count
    self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
    self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1 - self.momentum))
    return tf.cast(outputs, self.compute_dtype)

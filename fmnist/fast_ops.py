"""Faster stand-ins for two of Keras's training ops, for CPUs: the Adam update and the dropout mask.

Each replaces one method of one object, not a class, so a saved model still names plain Keras classes (Adam,
AdamW, Dropout) and loads with plain Keras, without this package.

Both lean on private attributes of Keras 3.15 (the optimizer's `_get_variable_index`, `_momentums` and
`_velocities`; the layer's `seed_generator`). `use_fast_ops` checks them once and falls back to Keras's own ops,
with a warning, where a Keras release has renamed one; `--no-fast-ops` switches them off by choice.
"""

import functools
import sys
import types

DROPOUT_LEVELS = 256  # one random byte per value: the rate is rounded to the nearest 1/256


def use_fast_ops(model, optimizer):
    """`model` and `optimizer` with the fast ops where this Keras has what they rely on, else unchanged."""
    import keras

    missing = missing_keras_internals()
    if missing:
        print(f"warning: Keras {keras.__version__} has no {missing}, which fmnist/fast_ops.py relies on; training "
              "with Keras's own Adam and Dropout ops (slower)", file=sys.stderr)
        return model, optimizer
    return use_byte_mask_dropout(model), use_fused_adam_kernel(optimizer)


@functools.cache
def missing_keras_internals():
    """"" when the private Keras attributes the fast ops use are all there; else the first missing one."""
    import keras
    import numpy as np

    optimizer = keras.optimizers.Adam()
    optimizer.build([keras.Variable(np.zeros(1, "float32"))])
    dropout = keras.layers.Dropout(0.5)
    needed = [(optimizer, "_get_variable_index"), (optimizer, "_momentums"), (optimizer, "_velocities"),
              (dropout, "seed_generator"), (dropout, "noise_shape")]
    return next((f"{type(owner).__name__}.{name}" for owner, name in needed if not hasattr(owner, name)), "")


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

    for layer in model.layers:
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

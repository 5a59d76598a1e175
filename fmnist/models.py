"""The model zoo: one builder per architecture, MODELS, the registry that --model picks from, and RECIPES, the
settings some of them train best with. To add a model, write a builder here and add it to MODELS.

Every model takes raw 28x28x1 pixels in 0-255 (a Rescaling layer comes first) and ends in a float32 softmax,
which keeps the probabilities exact when the rest of the net computes in bfloat16.
Keras is imported inside the builders so that importing this module stays cheap.
"""

from fmnist import IMAGE_SIDE, NUM_CLASSES

INPUT_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)


def _classifier():
    from keras import layers

    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="predictions")


def build_cnn():
    """The baseline: two convolutions, dropout, and a wide 400-unit dense layer."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(400, activation="relu"),
            layers.Dropout(0.5),
            _classifier(),
        ],
        name="cnn",
    )


def build_mlp():
    """A fully connected baseline: 512-256 with dropout."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1 / 255),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.3),
            _classifier(),
        ],
        name="mlp",
    )


def build_lenet():
    """LeNet-5 style: two conv + pool stages, then three fully connected layers."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1 / 255),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            _classifier(),
        ],
        name="lenet",
    )


# Batch-norm momentum for the nets that train with the recipes below: the moving statistics of a run of tens of
# epochs must not lag behind the weights, as they would at Keras's default of 0.99.
_RECIPE_BATCH_NORM_MOMENTUM = 0.9


def _resnet(name, widths, blocks, batch_norm_momentum=0.99):
    """A ResNet for 28x28 greyscale (He et al. 2016): a 3x3 stem, then for each of `widths` a stage of `blocks`
    basic blocks (two 3x3 convolutions with batch norm, and a shortcut: a 1x1 convolution where the shape
    changes), each stage after the first halving the resolution; then a global average pool."""
    import keras
    from keras import layers

    def conv_bn(x, filters, strides=1, kernel=3):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.BatchNormalization(momentum=batch_norm_momentum)(x)

    def basic_block(x, filters, strides):
        shortcut = x
        y = layers.ReLU()(conv_bn(x, filters, strides))
        y = conv_bn(y, filters)
        if strides != 1 or x.shape[-1] != filters:
            shortcut = conv_bn(x, filters, strides, kernel=1)
        return layers.ReLU()(layers.Add()([y, shortcut]))

    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.ReLU()(conv_bn(x, widths[0]))
    for stage, filters in enumerate(widths):
        for block in range(blocks):
            x = basic_block(x, filters, strides=2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _classifier()(x), name=name)


def build_resnet18(width=64):
    """ResNet-18 for 28x28 greyscale: 3x3 stem, no stem max-pool, [2, 2, 2, 2] basic blocks, global average pool.

    `width` is the first stage's channel count (64 in the published net); the stages use width x 1, 2, 4, 8.
    At full width one epoch takes about 20 minutes on a 2-core CPU, so it is really for GPUs.
    """
    return _resnet("resnet18", [width * multiplier for multiplier in (1, 2, 4, 8)], blocks=2)


def build_resnet20():
    """ResNet-20 as He et al. built it for CIFAR-10: 3 stages of 16, 32 and 64 channels (at 28x28, 14x14 and
    7x7), 3 basic blocks each; 0.27 M parameters. The strongest net per parameter in Fashion-MNIST's published
    tables, and the highest scorer here (the `resnet20` recipe below).
    """
    return _resnet("resnet20", [16, 32, 64], blocks=3, batch_norm_momentum=_RECIPE_BATCH_NORM_MOMENTUM)


def _conv_pool_dense(name, stages, dense_units, dropout, *, batch_norm=False, pool_first=False):
    """3x3 convolutions (padded, ReLU), a 2x2 max-pool between resolutions, then a dense head with dropout.

    `stages` lists the channels of the convolutions at 28x28, 14x14 and 7x7, for example [[32], [64], [128]].
    With `batch_norm` each convolution is followed by batch norm (_RECIPE_BATCH_NORM_MOMENTUM) before its ReLU.
    With `pool_first`, a convolution that ends a resolution is pooled before its batch norm and ReLU, as
    cifar10-airbench does: max-pooling commutes with a ReLU, and with batch norm while its scale is positive, so
    the block computes much the same on a quarter of the values.
    """
    import keras
    from keras import layers

    def conv(channels, pooled):
        if not batch_norm:
            return [layers.Conv2D(channels, 3, padding="same", activation="relu"), *pooled]
        before, after = (pooled, []) if pool_first else ([], pooled)
        return [layers.Conv2D(channels, 3, padding="same", use_bias=False), *before,
                layers.BatchNormalization(momentum=_RECIPE_BATCH_NORM_MOMENTUM), layers.ReLU(), *after]

    body = []
    for stage, channels in enumerate(stages):
        for i, c in enumerate(channels):
            ends_resolution = i == len(channels) - 1 and stage < len(stages) - 1
            body += conv(c, [layers.MaxPooling2D(2)] if ends_resolution else [])
    dropped = [layers.Dropout(dropout)] if dropout else []
    head = [layers.Flatten(), *dropped, layers.Dense(dense_units, activation="relu"), *dropped, _classifier()]
    return keras.Sequential([keras.Input(shape=INPUT_SHAPE), layers.Rescaling(1 / 255), *body, *head], name=name)


def build_fast(name="fast"):
    """A lean conv net for fast training on a CPU (trained with the `fast` and `balanced` recipes below).

    One convolution per resolution (28x28x16, 14x14x48, 7x7x96), then a dense head of 128: on a CPU an epoch
    costs what the FLOPs and the activations at full resolution cost, so the net keeps both small: 16 channels at
    28x28, and pooling before batch norm, halve a step's cost (docs/experiments.md). Batch norm (the fused kernel
    of fmnist/speed/fast_ops.py) lets it learn at a high rate from the first epoch; a run of a few epochs does not
    overfit, so there is no dropout.
    """
    return _conv_pool_dense(name, [[16], [48], [96]], dense_units=128, dropout=0, batch_norm=True, pool_first=True)


def build_balanced():
    """The `fast` net, for a longer run with shifts (the `balanced` recipe below): in the same time it scored
    higher than a net with more channels trained for fewer epochs (docs/experiments.md)."""
    return build_fast("balanced")


def build_best():
    """The `fast` net made deeper for a long run (the `best` recipe below): one convolution of 32
    at 28x28, two of 64 at 14x14 and two of 128 at 7x7, each with batch norm, then dense 256 with dropout. About
    2.6 times the arithmetic of `fast`: in the same time, 78 epochs of this net scored higher than 40 of a wider
    one (docs/experiments.md).
    """
    return _conv_pool_dense("best", [[32], [64, 64], [128, 128]], dense_units=256, dropout=0.3, batch_norm=True)


MODELS = {
    "cnn": build_cnn,
    "mlp": build_mlp,
    "lenet": build_lenet,
    "resnet18": build_resnet18,
    "fast": build_fast,
    "balanced": build_balanced,
    "best": build_best,
    "resnet20": build_resnet20,
}


def build_model(name, resnet_width=64):
    if name == "resnet18":
        return build_resnet18(resnet_width)
    return MODELS[name]()


# Training recipes: the settings a model trains best with, where they differ from the top-of-file defaults.
#
# The order of precedence is: a flag on the command line, then the model's recipe here, then the hyperparameter
# block at the top of fashion_mnist.py. So `--model fast` trains with the speed-run recipe, and
# `--model fast --epochs 3` changes only the epochs.

# What every recipe shares. A cosine schedule does its best work in its last epochs, so no recipe stops early
# (patience None: `--model resnet20 --epochs 300` runs all 300) and each keeps its last epoch. Nothing is chosen on
# the validation set, so 2 % of the images are enough to watch the run (docs/experiments.md).
_EVERY_RECIPE = dict(schedule="cosine", keep="last", val_fraction=0.02, patience=None)
# What `fast` and `balanced` share.
_SHORT_RUN = dict(_EVERY_RECIPE, batch_size=128, learning_rate=4e-3, warmup_epochs=0.3, weight_decay=5e-4)
# What `best` and `resnet20` share: a long run, so more augmentation against overfitting, and test-time copies with
# the shifts it trained on. Keras scales AdamW's decay by the learning rate, so 0.05 is what shrinks the weights
# noticeably.
_LONG_RUN = dict(_EVERY_RECIPE, learning_rate=3e-3, warmup_epochs=2, weight_decay=0.05, augment="flip-shift-erase",
                 tta="flip-shift")
RECIPES = {
    # A short run at a high peak rate, which batch norm keeps stable after a brief warm-up, learns the most per
    # second; batch 128 learnt more per epoch than 256 at the same speed.
    "fast": dict(_SHORT_RUN, epochs=6, augment="flip", tta="flip"),
    # Longer, so shifts as well as flips, and test-time copies shifted every way it trained on. Shifts of one pixel,
    # as the copies', scored half a point higher than of two in a run this short; `best`'s weight decay added 0.1
    # (docs/experiments.md).
    "balanced": dict(_SHORT_RUN, epochs=15, augment="flip-shift", shift=1, weight_decay=0.05, tta="flip-shift-xy"),
    "best": dict(_LONG_RUN, epochs=78, batch_size=256),
    # `best`'s recipe, at batch 128 (the usual for CIFAR ResNets) for 55 epochs: within the 120 baseline epochs at
    # float32 of issue 32's F4; in bf16 it scores above `best` (docs/experiments.md).
    "resnet20": dict(_LONG_RUN, epochs=55, batch_size=128),
}


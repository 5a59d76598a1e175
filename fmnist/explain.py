"""Why the model decided: a heat map per image of where its evidence for a class lies.

Convolutional models get Grad-CAM (Selvaraju et al. 2017; keras-io's `grad_cam` example is the reference): the
last Conv2D layer's feature maps, weighted by the mean gradient of the class score over each map, summed, kept
where positive, and scaled up to 28x28. A model without convolutions (the mlp) gets the gradient of the class
score with respect to the input pixels instead (saliency, Simonyan et al. 2013).

The class score is the logit, the last Dense layer's output before its softmax, as in keras-io's example:
through the softmax, the gradient of a class that is nearly certain vanishes.
"""

from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES

SIDE = 28


def last_conv_layer(model):
    """The last Conv2D layer of `model`, or None for a model without one."""
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return convs[-1] if convs else None


def method_name(model):
    conv = last_conv_layer(model)
    return f"Grad-CAM on {conv.name}" if conv else "input-gradient saliency"


def heat_maps(model, images, classes):
    """(N, 28, 28) float32 in [0, 1]: for each uint8 image (N, 28, 28) the map for its class in `classes` (N,).

    Each map is scaled so that its hottest pixel is 1 (all zeros where there is no positive evidence).
    """
    import keras
    import tensorflow as tf

    from fmnist.evaluation import float32_copy, model_input

    model = float32_copy(model)
    conv, last = last_conv_layer(model), model.layers[-1]
    # The logits are the last Dense layer's input times its kernel plus its bias; other heads use the output.
    logits = isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax
    head = last.input if logits else model.outputs[0]
    probe = keras.Model(model.inputs, [conv.output, head] if conv else [head])
    x = tf.convert_to_tensor(model_input(model, images))
    chosen = tf.one_hot(np.asarray(classes, "int64"), len(CLASS_NAMES))
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = probe(x, training=False)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        scores = keras.ops.matmul(outputs[-1], last.kernel) + last.bias if logits else outputs[-1]
        # Each image's score depends on that image alone, so one gradient of the sum gives every image's own.
        total = tf.reduce_sum(scores * chosen)
    if conv:
        maps = outputs[0]
        weights = tf.reduce_mean(tape.gradient(total, maps), axis=(1, 2), keepdims=True)
        heat = tf.nn.relu(tf.reduce_sum(maps * weights, axis=-1))[..., None]
        heat = tf.image.resize(heat, (SIDE, SIDE), method="bilinear")[..., 0]
    else:
        heat = tf.abs(tf.reshape(tape.gradient(total, x), (-1, SIDE, SIDE)))
    heat = heat.numpy().astype("float32")
    peak = heat.max(axis=(1, 2), keepdims=True)
    return np.divide(heat, peak, out=np.zeros_like(heat), where=peak > 0)


def write_explanations(model, images, probabilities, image_paths):
    """For each image: <image stem>-explained.png beside the image file (a free name: never replacing one), with
    the image and the heat maps for the top class and the runner-up. Returns the paths written."""
    from fmnist.figures import figure_png, plot_explanation
    from fmnist.runs import free_stem, write_new

    order = np.argsort(-probabilities, axis=1)
    top, second = heat_maps(model, images, order[:, 0]), heat_maps(model, images, order[:, 1])
    written = []
    for i, image_path in enumerate(map(Path, image_paths)):
        panels = [(heat[i], f"{CLASS_NAMES[c]} {probabilities[i, c]:.1%}" + ("" if heat[i].any() else "\n(none found)"))
                  for heat, c in ((top, order[i, 0]), (second, order[i, 1]))]
        fig = plot_explanation(images[i], panels, title=f"{image_path.name}: {method_name(model)}")
        folder = image_path.parent
        stem = free_stem(folder, f"{image_path.stem}-explained", [".png"])
        written.append(write_new(folder / f"{stem}.png", figure_png(fig)))
    return written


def pick_confused_pair(labels, predicted, true_class, other_class, per_class=4):
    """Indices of `per_class` test images of each of the two classes: half of them taken for the other class,
    half classified right (fewer of one kind where there are not enough), so that the maps can be compared."""
    picked = []
    for this, that in ((true_class, other_class), (other_class, true_class)):
        confused = np.flatnonzero((labels == this) & (predicted == that))
        right = np.flatnonzero((labels == this) & (predicted == this))
        wrong_count = max(-(-per_class // 2), per_class - len(right))
        picked.append(np.concatenate([confused[:wrong_count], right])[:per_class])
    return np.concatenate(picked).astype("int64")


def confused_pair_figure(model, images, labels, probabilities, pair, *, per_class=4):
    """The report's figure for the most confused pair {"true": name, "predicted": name}: a few test images of
    each class, with the heat maps for both classes."""
    from fmnist.figures import plot_confused_pair

    a, b = CLASS_NAMES.index(pair["true"]), CLASS_NAMES.index(pair["predicted"])
    predicted = probabilities.argmax(axis=1)
    chosen = pick_confused_pair(labels, predicted, a, b, per_class)
    heats = [heat_maps(model, images[chosen], np.full(len(chosen), c)) for c in (a, b)]
    return plot_confused_pair(images[chosen], labels[chosen], predicted[chosen], probabilities[chosen].max(axis=1),
                              heats, classes=(a, b), class_names=CLASS_NAMES,
                              title=f"{model.name}: {pair['true']} taken for {pair['predicted']} "
                                    f"{pair['count']} times; where it sees each class ({method_name(model)})")

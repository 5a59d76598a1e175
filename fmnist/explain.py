"""Why the model decided: a heat map per image of where its evidence for a class lies.

Convolutional models get Grad-CAM (Selvaraju et al. 2017; keras-io's `grad_cam` example is the reference): a
layer's feature maps, weighted by the gradient of the class score, summed over channels, kept where positive, and
scaled up to 28x28. A model without convolutions (the mlp) gets the gradient of the class score with respect to
the input pixels instead (saliency, Simonyan et al. 2013).

Deviations, because keras-io's maps put much of their heat on the black background: activations count relative
to a black image's, which every image shares, times the gradient integrated between the two, element-wise
(HiResCAM, Draelos & Carin 2020, with integrated gradients, Sundararajan et al. 2017); the layer is the last one
with a map at least MIN_SIDE wide (a 7x7 cell holds a sleeve and the gap beside it); each cell lands on its
receptive field's centre.

The class score is the logit, the last Dense layer's output before its softmax, as in keras-io's example:
through the softmax, the gradient of a class that is nearly certain vanishes.
"""

import functools
import sys

import numpy as np

from fmnist import CLASS_NAMES
from fmnist import IMAGE_SIDE as SIDE

MIN_SIDE = 10  # the coarsest map explained: cells of at most 3x3 pixels
STEPS = 16  # points on the path from the black image's activations to this image's (midpoint rule)


def feature_layer(model):
    """The layer whose feature maps are explained, or None for a model without Conv2D layers: the last Conv2D whose
    map is at least MIN_SIDE wide (the first Conv2D if none is), or, where the Conv2D's block goes on at the same
    resolution (BatchNormalization, Add), the first activation layer that ends it."""
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        return None
    conv = ([layer for layer in convs if min(layer.output.shape[1:3]) >= MIN_SIDE] or convs[:1])[-1]
    activations = (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU, keras.layers.ELU,
                   keras.layers.PReLU)
    for layer in model.layers[model.layers.index(conv) + 1:]:
        if isinstance(layer, keras.layers.Conv2D) or not _same_grid(layer.output, conv.output):
            break
        if isinstance(layer, activations):
            return layer
    return conv


def _same_grid(a, b):
    return not isinstance(a, list | tuple) and len(a.shape) == 4 and a.shape[1:3] == b.shape[1:3]


def method_name(model):
    layer = feature_layer(model)
    if layer is None:
        return "input-gradient saliency"
    return f"Grad-CAM (integrated, from black) on {layer.name}, {layer.output.shape[1]}x{layer.output.shape[2]}"


def receptive_field_centres(model, layer):
    """(offset, stride) per image axis (rows, columns): position i of `layer`'s map is centred on input pixel
    offset + stride * i. Follows the first input back to the model's input through Conv2D and pooling layers."""
    import keras

    geometry = [(0.0, 1), (0.0, 1)]
    for op, shape_in, shape_out in _chain_to(model, layer):
        if isinstance(op, keras.layers.Conv2D):
            kernel = op.kernel_size
        elif isinstance(op, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D):
            kernel = op.pool_size
        else:
            continue
        for axis in (0, 1):
            size_in, size_out = shape_in[1 + axis], shape_out[1 + axis]
            k, s = kernel[axis], op.strides[axis]
            before = max((size_out - 1) * s + k - size_in, 0) // 2 if op.padding == "same" else 0
            offset, stride = geometry[axis]
            geometry[axis] = (offset + stride * ((k - 1) / 2 - before), stride * s)
    return geometry


# Keras 3's symbolic tensors and layers keep their graph in private attributes; the first path below follows
# them. Where a Keras release renames one, the explanation takes the layers in order instead: exact for a chain of
# layers (cnn, lenet, fast and balanced, best), approximate for a net with branches (resnet18, resnet20).
KERAS_GRAPH_INTERNALS = ("KerasTensor._keras_history", "Layer._inbound_nodes")


@functools.cache
def missing_keras_internals():
    """"" when the private Keras attributes the graph walk uses are there (checked once, on a tiny model); else
    the first missing one, after a one-line warning."""
    import keras

    inputs = keras.Input((2,))
    layer = keras.layers.Dense(1)
    output = layer(inputs)
    history = getattr(output, "_keras_history", None)
    missing = ""
    if history is None or not hasattr(history, "operation") or not hasattr(history, "node_index"):
        missing = KERAS_GRAPH_INTERNALS[0]
    elif not hasattr(layer, "_inbound_nodes"):
        missing = KERAS_GRAPH_INTERNALS[1]
    if missing:
        print(f"warning: Keras {keras.__version__} has no {missing}, which fmnist/explain.py follows; heat maps "
              "are placed by the order of the layers instead (exact for nets without branches)", file=sys.stderr)
    return missing


def _chain_to(model, layer):
    """(layer, input shape, output shape) of each layer from the model's input to `layer`, in order."""
    if missing_keras_internals():
        layers = model.layers[:model.layers.index(layer) + 1]
        return [(op, op.input.shape, op.output.shape) for op in layers]
    import keras

    chain, tensor = [], _output_of(model, layer)
    while True:
        op, node = _producer(tensor)
        if isinstance(op, keras.layers.InputLayer) or not node.input_tensors:
            break
        tensor = node.input_tensors[0]
        chain.append((op, tensor.shape, node.output_tensors[0].shape))
    return chain[::-1]


def _producer(tensor):
    """The layer that computed a symbolic tensor, and the call (node) in which it did."""
    history = tensor._keras_history
    return history.operation, history.operation._inbound_nodes[history.node_index]


def _output_of(model, layer):
    """`layer`'s output in the graph from the model's inputs to its outputs. (`layer.output` is its first call's,
    and a loaded Sequential model calls its layers once per layer added: the first is a graph of its own.)"""
    if missing_keras_internals():
        return layer.output
    stack, seen = list(model.outputs), set()
    while stack:
        tensor = stack.pop()
        op, node = _producer(tensor)
        if op is layer:
            return tensor
        for parent in node.input_tensors:
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    raise ValueError(f"{layer.name} does not lead to {model.name}'s outputs")


def _interpolation(size, offset, stride):
    """(SIDE, size): linear interpolation from a map's positions (centred at offset + stride * i) to the pixels,
    holding the edge values beyond the outermost centres."""
    u = np.clip((np.arange(SIDE) - offset) / stride, 0, size - 1)
    low = np.floor(u).astype(int)
    high = np.minimum(low + 1, size - 1)
    matrix = np.zeros((SIDE, size))
    np.add.at(matrix, (np.arange(SIDE), low), 1 - (u - low))
    np.add.at(matrix, (np.arange(SIDE), high), u - low)
    return matrix


def attributions(model, images, classes, steps=STEPS):
    """(N, h, w) float32, signed: for each uint8 image (N, 28, 28) how much each position of feature_layer(model)
    adds to the logit of its class in `classes` (N,) over an all-black image: the activations' change from the
    black image's times the class score's gradient averaged along the straight path between them, summed over
    channels. Over all positions it adds up to that change of the score (up to the midpoint rule's error)."""
    import keras
    import tensorflow as tf

    from fmnist.evaluation import float32_copy, model_input

    model = float32_copy(model)
    layer, (head, scores) = feature_layer(model), _class_scores(model)
    features_tensor = _output_of(model, layer)
    probe = keras.Model(model.inputs[0], features_tensor)
    rest = keras.Model(features_tensor, head)
    x = tf.convert_to_tensor(model_input(model, images))
    features = probe(x, training=False)
    black = probe(tf.zeros_like(x[:1]), training=False)
    chosen = tf.one_hot(np.asarray(classes, "int64"), len(CLASS_NAMES))
    gradient = tf.zeros_like(features)
    for t in (np.arange(steps) + 0.5) / steps:
        between = black + float(t) * (features - black)
        with tf.GradientTape(watch_accessed_variables=False) as tape:  # no gradients for the weights
            tape.watch(between)
            # Each image's score depends on that image alone, so one gradient of the sum gives every image's own.
            total = tf.reduce_sum(scores(rest(between, training=False)) * chosen)
        gradient += tape.gradient(total, between) / steps
    return tf.reduce_sum((features - black) * gradient, axis=-1).numpy().astype("float32")


def _class_scores(model):
    """(head, scores): the tensor that the class scores are computed from, and the function that computes them:
    the logits where the last layer is a Dense softmax (its input times its kernel plus its bias), else the
    outputs as they are."""
    import keras

    if missing_keras_internals():
        last, head = model.layers[-1], model.layers[-1].input
    else:
        last, node = _producer(model.outputs[0])
        head = node.input_tensors[0]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        return head, lambda head: keras.ops.matmul(head, last.kernel) + last.bias
    return model.outputs[0], lambda head: head


def heat_maps(model, images, classes):
    """(N, 28, 28) float32 in [0, 1]: for each uint8 image (N, 28, 28) the map for its class in `classes` (N,).

    Each map is scaled so that its hottest pixel is 1 (all zeros where there is no positive evidence).
    """
    layer = feature_layer(model)
    if layer is not None:
        cells = np.maximum(attributions(model, images, classes), 0)
        (row_offset, row_stride), (column_offset, column_stride) = receptive_field_centres(model, layer)
        rows = _interpolation(cells.shape[1], row_offset, row_stride)
        columns = _interpolation(cells.shape[2], column_offset, column_stride)
        heat = np.einsum("ph,nhw,qw->npq", rows, cells, columns).astype("float32")
    else:
        heat = _saliency(model, images, classes)
    peak = heat.max(axis=(1, 2), keepdims=True)
    return np.divide(heat, peak, out=np.zeros_like(heat), where=peak > 0)


def _saliency(model, images, classes):
    """|d logit / d pixel| for each image's class (N, 28, 28)."""
    import keras
    import tensorflow as tf

    from fmnist.evaluation import float32_copy, model_input

    model = float32_copy(model)
    head, scores = _class_scores(model)
    probe = keras.Model(model.inputs[0], head)
    x = tf.convert_to_tensor(model_input(model, images))
    chosen = tf.one_hot(np.asarray(classes, "int64"), len(CLASS_NAMES))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x)
        total = tf.reduce_sum(scores(probe(x, training=False)) * chosen)
    return tf.abs(tf.reshape(tape.gradient(total, x), (-1, SIDE, SIDE))).numpy().astype("float32")


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
                              title=f"{model.name} took {pair['true']} for {pair['predicted']} {pair['count']} "
                                    "times: where it finds evidence for each class (red: strongest, blue: none)",
                              subtitle=method_name(model))

"""Measuring a trained model on held-out data: load it, predict, and turn the predictions into a report.

Everything is computed from the predicted probabilities with NumPy, so a model saved without its optimizer or
metrics (a compatible one from elsewhere) is measured exactly like one this project trained.
"""

from pathlib import Path

import numpy as np

from fmnist import CLASS_NAMES, IMAGE_SIDE, NUM_CLASSES
from fmnist.data import PREDICT_BATCH, image_batches
from fmnist.errors import UserError, first_line

EPSILON = 1e-7  # Keras's cross-entropy clips probabilities to [EPSILON, 1 - EPSILON]; so does ours


def load_model(path):
    """A .keras model that takes 28x28 (or 28x28x1) images in 0-255 and gives 10 class probabilities."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    check_keras_archive(path)
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - a broken or foreign file can fail in many ways; all mean the same
        raise UserError(f"{path}: not a loadable .keras model ({first_line(e)})") from None
    check_model_shapes(path, model.input_shape, model.output_shape)
    return model


MAX_KERAS_CONFIG_BYTES = 2**20  # the config of the largest net here (resnet18) is under 100 KB


def check_keras_archive(path):
    """Refuse, before Keras reads it, a file that is not a .keras archive (a zip file named *.keras, lower case,
    as Keras requires) or whose config declares itself larger than any model's (a zip bomb costs gigabytes)."""
    import zipfile

    if path.suffix != ".keras":
        raise UserError(f"{path}: Keras loads only files whose name ends in .keras (lower case); rename it")
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"{path}: not a loadable .keras model (a .keras model is a zip archive; this one is "
                        f"truncated or in another format: {first_line(e)})") from None
    for member in ("config.json", "metadata.json"):
        if sizes.get(member, 0) > MAX_KERAS_CONFIG_BYTES:
            raise UserError(f"{path}: its {member} declares {sizes[member]:,} bytes, over the "
                            f"{MAX_KERAS_CONFIG_BYTES:,} any model here needs; not loading it")


def check_model_shapes(path, inputs, outputs):
    """Refuse, in one line naming the shapes, a model file (of any runtime) whose input does not take a batch of
    28x28 (or 28x28x1) images or whose output is not one probability per Fashion-MNIST class: its outputs would
    be given the classes' names, right or wrong. A shape is a tuple, with None where the file leaves it open."""
    side = IMAGE_SIDE
    if not isinstance(inputs, tuple) or tuple(inputs[1:]) not in ((side, side), (side, side, 1)):
        raise UserError(f"{path}: the model takes input of shape {inputs}; expected (None, {side}, {side}, 1) or "
                        f"(None, {side}, {side}), images in 0-255")
    if not isinstance(outputs, tuple) or tuple(outputs[1:]) != (NUM_CLASSES,):
        raise UserError(f"{path}: the model outputs shape {outputs}; expected (None, {NUM_CLASSES}), "
                        "one probability per class")


def as_input(images, input_shape):
    """uint8 images (N, 28, 28) as the float32 batch a model of `input_shape` takes: with the channel axis if any."""
    images = np.asarray(images, dtype="float32")
    return images[..., None] if len(input_shape) == 4 else images


def model_input(model, images):
    """uint8 images (N, 28, 28) as the float32 batch the model takes: with or without the channel axis."""
    return as_input(images, model.input_shape)


# Test-time augmentation: the copies of each image whose predictions are averaged, by --tta. They should match the
# training augmentation: shifted copies help a net trained with shifts and hurt one trained on flips alone
# (docs/experiments.md).
TTA_HELP = ("test-time augmentation: average the prediction over the image and its mirror (flip), and also over each "
            "shifted a pixel left and right (flip-shift), or left, right, up and down (flip-shift-xy)")
_SIDEWAYS = ((0, 0), (0, 1), (0, -1))  # (pixels shifted down, pixels shifted right)
_FOUR_WAYS = (*_SIDEWAYS, (1, 0), (-1, 0))
TTA_VIEWS = {  # (mirrored, pixels down, pixels right) for each copy
    "none": ((False, 0, 0),),
    "flip": ((False, 0, 0), (True, 0, 0)),
    "flip-shift": tuple((mirrored, *shift) for mirrored in (False, True) for shift in _SIDEWAYS),
    "flip-shift-xy": tuple((mirrored, *shift) for mirrored in (False, True) for shift in _FOUR_WAYS),
}


def predict_probabilities(model, images, batch_size=PREDICT_BATCH, tta="none"):
    """Class probabilities (N, 10) as float32, checked to be probabilities (the last layer must be a softmax).

    With `tta` (test-time augmentation) each is the average over copies of the image (TTA_VIEWS): "flip", itself
    and its mirror; "flip-shift", those and each also shifted a pixel left and right; "flip-shift-xy", also up
    and down. Clothes mean the same mirrored or moved a little, so each copy is a free further opinion.
    """
    x = model_input(model, images)
    views = [_shift(x[:, :, ::-1] if mirrored else x, down, right) for mirrored, down, right in TTA_VIEWS[tta]]
    return checked_probabilities(sum(np.asarray(model.predict(image_batches(view, batch_size), verbose=0),
                                                dtype="float32") for view in views) / len(views))


def checked_probabilities(probabilities, tolerance=1e-2):
    """`probabilities` (N, 10), after checking that they are: non-negative, each row summing to 1 within
    `tolerance` (an int8 model's outputs come in steps of 1/256, so their sums stray further)."""
    probabilities = np.asarray(probabilities, "float32")
    if not (np.all(probabilities >= 0) and np.allclose(probabilities.sum(axis=1), 1, atol=tolerance)):
        raise UserError("the model's outputs are not probabilities (rows must sum to 1); its last layer must be "
                        "a softmax")
    return probabilities


def float32_copy(model):
    """`model` with every layer computing in float32 (same weights), or `model` itself when it already does.

    A model trained under mixed_bfloat16 keeps float32 weights but computes in bfloat16. Exported files and
    gradients (Grad-CAM) are computed from this float32 copy: the runtimes have no fast bfloat16 kernels, and
    bfloat16's 8-bit mantissa would make heat maps coarse.
    """
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model

    def in_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=in_float32)
    copy.set_weights(model.get_weights())
    return copy


def _shift(images, down, right):
    """`images` (N, height, width, ...) moved `down` rows down and `right` columns to the right (up or left if
    negative); black comes in."""
    if down == right == 0:
        return images
    height, width = images.shape[1:3]
    pad = max(abs(down), abs(right))  # zero padding, then the window that moves the image
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 3))
    return padded[:, pad - down:pad - down + height, pad - right:pad - right + width]


def confusion_matrix(labels, predicted, num_classes=NUM_CLASSES):
    """counts[true, predicted]."""
    return np.bincount(np.asarray(labels, "int64") * num_classes + predicted,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_report(matrix, class_names=CLASS_NAMES):
    """Precision, recall, F1 and support of every class, from a confusion matrix (0 where undefined)."""
    matrix = np.asarray(matrix, dtype="float64")
    hits, support, guessed = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision = np.divide(hits, guessed, out=np.zeros_like(hits), where=guessed > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits), where=both > 0)
    return [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support, strict=True)]


def most_confused(matrix, count=5, class_names=CLASS_NAMES):
    """The `count` largest off-diagonal cells: which true class was most often taken for which other one."""
    off_diagonal = np.array(matrix, dtype="int64")
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(-off_diagonal, axis=None, kind="stable")[:count]
    pairs = [np.unravel_index(i, off_diagonal.shape) for i in order]
    return [{"true": class_names[t], "predicted": class_names[p], "count": int(off_diagonal[t, p])}
            for t, p in pairs if off_diagonal[t, p] > 0]


def summarise(probabilities, labels):
    """The test report as plain data for the run record: metrics, per-class table, confusions, the matrix."""
    labels = np.asarray(labels, "int64")
    predicted = probabilities.argmax(axis=1)
    true_probability = np.clip(probabilities[np.arange(len(labels)), labels], EPSILON, 1 - EPSILON)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    matrix = confusion_matrix(labels, predicted)
    return {
        "loss": float(-np.log(true_probability).mean()),
        "accuracy": float((predicted == labels).mean()),
        "top5_accuracy": float((top5 == labels[:, None]).any(axis=1).mean()),
        "images": len(labels),
        "per_class": per_class_report(matrix),
        "most_confused": most_confused(matrix),
        "confusion_matrix": matrix.tolist(),
    }


def conv_feature_maps(model, image):
    """[(layer name, (height, width, channels) float32 array)] for every Conv2D layer, on one uint8 image.

    Empty for a model without convolutions. Layers nested inside sub-models are not looked into.
    """
    import keras

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        return []
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    maps = probe([model_input(model, image[None])], training=False)
    return [(layer.name, keras.ops.convert_to_numpy(m)[0].astype("float32")) for layer, m in zip(convs, maps,
                                                                                                   strict=True)]

"""Measuring a trained model on held-out data."""

import numpy as np


def predict_probabilities(model, images, batch_size=512, tta=False):
    """Class probabilities for uint8 images (n, 28, 28); with `tta`, averaged with those of the mirrored images."""
    x = images[..., None].astype("float32")
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    if tta:  # clothes are left-right symmetric in meaning, so the mirror is a free second opinion
        probabilities = (probabilities + model.predict(x[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
    return probabilities


def evaluate(model, images, labels, tta=False):
    """Loss, accuracy and top-5 accuracy on a labelled set, as plain floats."""
    probabilities = predict_probabilities(model, images, tta=tta)
    labels = np.asarray(labels, dtype=np.int64)
    picked = probabilities[np.arange(len(labels)), labels]
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    return {
        "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "top5_accuracy": float(np.mean((top5 == labels[:, None]).any(axis=1))),
    }

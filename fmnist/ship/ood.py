""""This doesn't look like a garment": flag inputs unlike the training data, beside the prediction, never instead of it.

The score is the maximum softmax probability (Hendrycks & Gimpel 2017, the usual baseline), joined with three
statistics of the pixels themselves: brightness, the share of lit pixels, and roughness (how much neighbouring
pixels differ). The probability alone misses what a net is confidently wrong about: uniform noise or a blank
frame can get 99 % "Bag". The statistics catch those, since no garment photographed for the dataset looks like
either.

`calibrate` fixes the thresholds on the validation images (the training script's held-out split) so that
FLAG_SHARE of them are flagged: the probability's threshold takes most of that share and each statistic's range a
little of the rest. Each part of the score is scaled so that 1.0 is its threshold; the score is the largest part,
and an image is flagged when its score is over 1. NumPy only: no TensorFlow, so the servers of .onnx and .tflite
files stay light.
"""

import json
from pathlib import Path

import numpy as np

FLAG_SHARE = 0.05  # of the validation images; most of them are ones the model gets wrong or nearly wrong
# The split the training script holds out by default (fashion_mnist.py: VAL_FRACTION, SEED), so the images
# calibrated on are ones the model never trained on.
VAL_FRACTION, SEED = 0.1, 1337
STATISTICS_SHARE = 0.1  # of FLAG_SHARE, split over the statistics' two tails (the rest is the probability's)
LIT = 0.1  # a pixel brighter than this (of 255) counts as lit
STATISTIC_NAMES = ("brightness", "lit_share", "roughness")
SCORE_NAME = "max-probability+pixel-statistics"


def pixel_statistics(images):
    """(N, 3) float: mean brightness, share of lit pixels, mean difference between neighbours (all 0-1)."""
    x = np.asarray(images, "float32").reshape(-1, 28, 28) / 255
    rough = (np.abs(np.diff(x, axis=1)).mean((1, 2)) + np.abs(np.diff(x, axis=2)).mean((1, 2))) / 2
    return np.stack([x.mean((1, 2)), (x > LIT).mean((1, 2)), rough], axis=1)


def _parts(calibration, images, probabilities):
    """(N, 1 + statistics) parts of the score, each 1.0 at its threshold and higher for stranger inputs."""
    top = np.asarray(probabilities, "float32").max(axis=1)
    parts = [(1 - top) / max(1 - calibration["threshold"], 1e-6)]
    stats = pixel_statistics(images)
    for i, name in enumerate(STATISTIC_NAMES):
        low, high = calibration["statistics"][name]
        centre, half = (low + high) / 2, max((high - low) / 2, 1e-6)
        parts.append(np.abs(stats[:, i] - centre) / half)
    return np.stack(parts, axis=1)


def flags(calibration, images_uint8, probabilities):
    """(flagged bool array, score array) for N images (N, 28, 28) uint8 and the model's probabilities (N, 10).
    The score is 1.0 at the threshold; higher is stranger."""
    if len(images_uint8) == 0:
        return np.zeros(0, bool), np.zeros(0, "float32")
    score = _parts(calibration, images_uint8, probabilities).max(axis=1)
    return score > 1.0, score.astype("float32")


def thresholds(probabilities, stats, share):
    """The calibration's thresholds that flag about `share` of the images behind `probabilities` and `stats`."""
    tail = share * STATISTICS_SHARE / (2 * len(STATISTIC_NAMES))
    return {"threshold": float(np.quantile(probabilities.max(axis=1), share * (1 - STATISTICS_SHARE))),
            "statistics": {name: [float(np.quantile(stats[:, i], tail)), float(np.quantile(stats[:, i], 1 - tail))]
                           for i, name in enumerate(STATISTIC_NAMES)}}


def validation_images(data=None):
    """The training script's default validation split of the training images (uint8, labels)."""
    from fmnist.data import load_fashion_mnist, split_train_val

    data = data or load_fashion_mnist()
    _, (images, labels) = split_train_val(data.x_train, data.y_train, VAL_FRACTION, SEED)
    return images, labels


def calibrate(runner, data=None):
    """The flag's calibration for `runner`'s model on the validation images: a JSON-able dict with the score's
    name, its thresholds, the share of validation images it flags and how many images were used.

    The parts overlap, so the share asked of the quantiles is searched for (bisection) until the union of the
    parts flags FLAG_SHARE of the images."""
    images, _ = validation_images(data)
    probabilities = runner.probabilities(images)
    stats = pixel_statistics(images)
    low, high = 0.0, 2 * FLAG_SHARE  # the union of the parts flags at most their sum, FLAG_SHARE at 1x
    for _ in range(20):
        middle = (low + high) / 2
        calibration = thresholds(probabilities, stats, middle)
        low, high = (middle, high) if flags(calibration, images, probabilities)[0].mean() < FLAG_SHARE \
            else (low, middle)
    calibration = thresholds(probabilities, stats, low)
    flagged = flags(calibration, images, probabilities)[0]
    return {"score": SCORE_NAME, **calibration, "validation_flagged": round(float(flagged.mean()), 4),
            "images": len(images), "split": f"validation: {VAL_FRACTION:.0%} of the training images, seed {SEED}",
            "rule": f"flagged when the top probability is under {calibration['threshold']:.3f}, or the image's "
                    f"{', '.join(STATISTIC_NAMES)} is outside the range of the validation images'"}


def card_path(model_path):
    """The JSON card export writes beside a model file (a SavedModel folder's is beside the folder)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def calibration_for(runner, model_path, data=None):
    """The calibration in the model card beside `model_path` if the card has an "ood" entry, else a fresh one
    (a .keras model has no card; calibrating takes one pass over the 6,000 validation images of `data`)."""
    path = card_path(model_path)
    if path.is_file() and path.stat().st_size < 2**20:
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            card = {}
        if isinstance(card, dict) and _valid(card.get("ood")):
            return card["ood"]
    return calibrate(runner, data)


def _valid(calibration):
    """True for a calibration this module can use (a card comes from anywhere: check its shape)."""
    try:
        numbers = [calibration["threshold"], *(v for name in STATISTIC_NAMES for v in calibration["statistics"][name])]
        return calibration["score"] == SCORE_NAME and all(isinstance(v, int | float) and np.isfinite(v)
                                                          for v in numbers)
    except (KeyError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------------------------
# What the flag catches: python -m fmnist.ship.ood MODEL
# ---------------------------------------------------------------------------------------------------------------


def digit_images():
    """scikit-learn's 1,797 bundled handwritten digits (8x8, 0-16), upscaled to 28x28 uint8, light on black as
    the dataset's garments are. A dev dependency only."""
    from PIL import Image

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        from fmnist.errors import UserError

        raise UserError("the digits come with scikit-learn, a dev dependency: pip install -r requirements-dev.txt") \
            from None

    digits = load_digits().images * (255 / 16)
    return np.stack([np.asarray(Image.fromarray(d.astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR))
                     for d in digits])


def blank_and_noise(count=200, seed=0):
    """`count` blank frames (each a uniform grey from black to white) and `count` of uniform noise."""
    rng = np.random.default_rng(seed)
    blank = np.repeat(np.linspace(0, 255, count).round().astype(np.uint8)[:, None, None], 28 * 28, 1)
    return blank.reshape(-1, 28, 28), rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)


def rates(runner, calibration, data=None):
    """{kind of image: share flagged}, with the probability alone beside the combined score."""
    from fmnist.data import load_fashion_mnist

    data = data or load_fashion_mnist()
    # The baseline at its fairest: its own threshold, flagging FLAG_SHARE of the validation images by itself.
    alone = float(np.quantile(runner.probabilities(validation_images(data)[0]).max(1), FLAG_SHARE))
    blank, noise = blank_and_noise()
    kinds = {"Fashion-MNIST test": data.x_test, "sklearn digits": digit_images(), "blank": blank, "noise": noise}
    result = {}
    for name, images in kinds.items():
        probabilities = runner.probabilities(images)
        result[name] = {"flagged": float(flags(calibration, images, probabilities)[0].mean()),
                        "max-probability alone": float((probabilities.max(1) < alone).mean())}
    return result


def main(argv=None):
    import argparse

    from fmnist.ship.runtimes import open_model

    parser = argparse.ArgumentParser(prog="python -m fmnist.ship.ood", description="Calibrate the not-a-garment "
                                     "flag for a model and print the share it flags of each kind of image.")
    parser.add_argument("model", help="a .keras model, a .savedmodel folder, an .onnx or .tflite file")
    args = parser.parse_args(argv)
    runner = open_model(args.model)
    calibration = calibrate(runner)
    print(json.dumps(calibration, indent=2))
    for name, shares in rates(runner, calibration).items():
        print(f"{name:<20} flagged {shares['flagged']:6.1%}   (max probability alone: "
              f"{shares['max-probability alone']:6.1%})")
    return 0


if __name__ == "__main__":
    from fmnist.errors import run_guarded

    run_guarded(main)

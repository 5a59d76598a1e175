import numpy as np

from fashion_mnist import DEFAULTS
from fmnist.config import parse_config
from fmnist.data import ERASE_AREA, make_dataset, random_erase, random_shift
from fmnist.models import RECIPES


def test_flags_override_the_recipe_which_overrides_the_defaults():
    plain, _ = parse_config([], DEFAULTS)
    assert (plain.model, plain.epochs, plain.batch_size, plain.learning_rate) == ("cnn", 20, 64, 0.001)
    assert plain.augment == DEFAULTS["augment"] and plain.tta == DEFAULTS["tta"]

    for model, recipe in RECIPES.items():
        config, _ = parse_config(["--model", model], DEFAULTS)
        for key, value in recipe.items():
            assert getattr(config, key) == value

    tuned, _ = parse_config(["--model", "fast", "--epochs", "3", "--tta", "none"], DEFAULTS)
    assert tuned.epochs == 3 and tuned.tta == "none"
    assert tuned.batch_size == RECIPES["fast"]["batch_size"]


def test_random_shift_moves_each_image_by_at_most_two_pixels_without_blur():
    rng = np.random.default_rng(0)
    images = np.zeros((64, 28, 28, 1), np.float32)
    images[:, 4:24, 4:24] = rng.integers(1, 256, size=(64, 20, 20, 1))  # content away from the border
    shifted = random_shift(images, 2, seed=[1, 2]).numpy()
    offsets = set()
    for original, moved in zip(images, shifted, strict=True):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(np.roll(original, (dy, dx), axis=(0, 1)), moved)]
        assert len(matches) == 1  # an exact whole-pixel shift, no interpolation
        offsets.add(matches[0])
    assert len(offsets) > 5  # each image gets its own offset


def test_flip_augmentation_mirrors_some_images_and_keeps_the_others():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(128, 28, 28), dtype=np.uint8)
    labels = np.arange(128) % 10
    dataset = make_dataset(images, labels, 128, augment="flip", seed=0)
    (x, y), = dataset.as_numpy_iterator()
    (x_again, _), = dataset.as_numpy_iterator()
    assert not np.array_equal(x, x_again)  # a new draw every epoch
    assert x.shape == (128, 28, 28, 1) and x.dtype == np.float32
    assert np.array_equal(y, labels)
    mirrored = [np.array_equal(a[..., 0], b[:, ::-1]) for a, b in zip(x, images, strict=True)]
    unchanged = [np.array_equal(a[..., 0], b) for a, b in zip(x, images, strict=True)]
    assert all(m or u for m, u in zip(mirrored, unchanged, strict=True))
    assert 20 < sum(mirrored) < 108


def test_random_erasing_replaces_one_rectangle_in_about_half_the_images():
    images = np.full((256, 28, 28, 1), 300.0, np.float32)  # a value the 0-255 noise can never take
    erased = random_erase(images, seed=[3, 4]).numpy()[..., 0] != 300
    touched = erased.any(axis=(1, 2))
    assert 0.35 < touched.mean() < 0.65
    for mask in erased[touched]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert mask.sum() == len(rows) * len(cols)  # one solid rectangle...
        assert np.ptp(rows) == len(rows) - 1 and np.ptp(cols) == len(cols) - 1  # ...of adjacent rows and columns
        assert 0.5 * ERASE_AREA[0] * 784 <= mask.sum() <= 1.5 * ERASE_AREA[1] * 784


def test_the_training_stream_gives_every_image_once_an_epoch_in_a_new_order_without_autotuning():
    images = np.arange(250, dtype=np.uint8).reshape(250, 1, 1).repeat(28, axis=1).repeat(28, axis=2)
    labels = np.arange(250) % 10
    dataset = make_dataset(images, labels, 64, shuffle=True, seed=0)
    assert dataset.options().autotune.enabled is False  # its thread stalled epoch starts (fmnist/data.py)
    orders = []
    for _ in range(2):
        batches = list(dataset.as_numpy_iterator())
        assert [len(y) for _, y in batches] == [64, 64, 64, 58]
        order = np.concatenate([x[:, 0, 0, 0] for x, _ in batches]).astype(int)
        assert sorted(order) == list(range(250))
        assert np.array_equal(np.concatenate([y for _, y in batches]), order % 10)  # labels stay with images
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])

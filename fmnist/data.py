"""Fashion-MNIST on disk: find the files, read and check them, split them, and stream them with tf.data."""

import gzip
import hashlib
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist import IMAGE_SIDE, NUM_CLASSES
from fmnist.errors import UserError

# file name -> (IDX magic number, item count, SHA-256 of the decompressed content)
FILES = {
    "train-images-idx3-ubyte.gz": (2051, 60_000, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": (2049, 60_000, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": (2051, 10_000, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": (2049, 10_000, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
PIPELINE_DEPTH = 2  # batches prepared in parallel, and batches prefetched
SHIFTING = ("flip-shift", "flip-shift-erase")  # the --augment choices that shift images (by --shift pixels)
# --augment flip-shift-erase: random erasing (Zhong et al. 2017, arXiv:1708.04896) with the paper's settings:
# half the images get one rectangle of noise covering 2-40 % of the image, aspect ratio 0.3 to 3.3.
ERASE_PROBABILITY, ERASE_AREA, ERASE_ASPECT = 0.5, (0.02, 0.4), (0.3, 1 / 0.3)
# The largest real file is 47,040,016 bytes decompressed; refuse to inflate anything much bigger.
MAX_DECOMPRESSED_BYTES = 48_000_000

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "fashion"
KERAS_CACHE_DIR = Path.home() / ".keras" / "datasets" / "fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


class DataError(UserError):
    """A data file is missing, unreadable or not what it should be."""


@dataclass(frozen=True)
class FashionMnist:
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # where the files came from, for the log and the run record


# ---------------------------------------------------------------------------------------------------------------
# Reading and checking one IDX file
# ---------------------------------------------------------------------------------------------------------------


def read_gzip(path):
    """Decompressed bytes of a .gz file, or a DataError that says what is wrong with it."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(MAX_DECOMPRESSED_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except gzip.BadGzipFile:
        raise DataError(f"{path}: not a gzip file") from None
    except EOFError:
        raise DataError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except zlib.error as e:
        raise DataError(f"{path}: corrupt gzip data ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_DECOMPRESSED_BYTES:
        raise DataError(f"{path}: decompresses to more than {MAX_DECOMPRESSED_BYTES:,} bytes; not a Fashion-MNIST file")
    return raw


def parse_idx(raw, name="IDX data"):
    """Parse IDX bytes (uint8 payload, 1 or 3 dimensions) into a NumPy array without trusting the header.

    The header's dimensions are checked against the actual length before anything is allocated, so a
    corrupt header can neither crash the reader nor make it allocate gigabytes.
    """
    if len(raw) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(raw)} bytes)")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{name}: bad magic number 0x{raw[:4].hex()} (expected 0x00000801 or 0x00000803, uint8 IDX)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{name}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if ndim == 3 and dims[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise DataError(f"{name}: images are {dims[1]}x{dims[2]}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    payload = len(raw) - header_len
    expected = int(np.prod(dims, dtype=np.int64))
    if payload < expected:
        raise DataError(f"{name}: truncated: header promises {expected:,} bytes of data, file has {payload:,}")
    if payload > expected:
        raise DataError(f"{name}: {payload - expected:,} unexpected bytes after the data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def read_idx_file(path, verify=True):
    """Read one of the four Fashion-MNIST files and check it against what that file must contain."""
    path = Path(path)
    magic, count, sha256 = FILES[path.name]
    raw = read_gzip(path)
    array = parse_idx(raw, str(path))
    actual_magic = int.from_bytes(raw[:4], "big")
    if actual_magic != magic:
        raise DataError(f"{path}: magic number {actual_magic} but a {path.name} file has {magic}")
    if len(array) != count:
        raise DataError(f"{path}: holds {len(array):,} items, expected {count:,}")
    if array.ndim == 1 and array.max(initial=0) >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(array.max())} is outside 0-{NUM_CLASSES - 1}")
    if verify and hashlib.sha256(raw).hexdigest() != sha256:
        raise DataError(f"{path}: checksum mismatch (the content differs from the official file); "
                        "replace it, or pass --no-verify to use modified data on purpose")
    return array


# ---------------------------------------------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------------------------------------------


def _has_all_files(directory):
    return all((directory / name).is_file() for name in FILES)


def find_data_dir(data_dir=None):
    """Return (folder, description) of the first source holding all four files, downloading as a last resort.

    An explicit folder (--data-dir or FASHION_MNIST_DIR) is the only place looked at: a typo there should
    fail loudly rather than quietly train on other data.
    """
    explicit = data_dir or os.environ.get("FASHION_MNIST_DIR")
    if explicit:
        directory = Path(explicit).expanduser()
        origin = "--data-dir" if data_dir else "FASHION_MNIST_DIR"
        if not directory.is_dir():
            raise DataError(f"{directory} ({origin}): no such folder")
        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            raise DataError(f"{directory / missing[0]}: file not found ({origin} must hold the four .gz files)")
        return directory, f"{directory} ({origin})"

    for directory, label in [
        (SHIPPED_DIR, "shipped copy"),
        (KERAS_CACHE_DIR, "Keras cache"),
        (DEBIAN_DIR, "Debian package dataset-fashion-mnist"),
    ]:
        if _has_all_files(directory):
            return directory, f"{directory} ({label})"
    return _download(), f"{KERAS_CACHE_DIR} (downloaded)"


def _download():
    import keras  # only when every local source failed

    try:
        for name in FILES:
            keras.utils.get_file(name, origin=DOWNLOAD_URL + name, cache_dir=str(KERAS_CACHE_DIR.parent.parent),
                                 cache_subdir="datasets/fashion-mnist")
    except Exception as e:  # noqa: BLE001 - any network failure means the same thing to the user
        looked = ", ".join(str(d) for d in (SHIPPED_DIR, KERAS_CACHE_DIR, DEBIAN_DIR))
        raise DataError(
            f"Fashion-MNIST not found (looked in {looked}) and the download failed ({type(e).__name__}); "
            "put the four .gz files in data/fashion/ or pass --data-dir, or `apt-get install dataset-fashion-mnist`"
        ) from None
    return KERAS_CACHE_DIR


def load_fashion_mnist(data_dir=None, verify=True):
    directory, source = find_data_dir(data_dir)
    x_train, y_train, x_test, y_test = (read_idx_file(directory / name, verify) for name in FILES)
    return FashionMnist(x_train, y_train, x_test, y_test, source)


# ---------------------------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------------------------


def stratified_order(labels, seed):
    """A seeded permutation of the indices in which every prefix holds the classes in their overall proportions.

    Each index gets the rank it has within its own (shuffled) class, scaled to (0, 1); sorting by that rank
    interleaves the classes evenly. A validation set is then a prefix, and a --limit subset the next block.
    """
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    quantile = np.empty(len(labels))
    for c in np.unique(labels):
        members = shuffled[labels[shuffled] == c]
        quantile[members] = (np.arange(len(members)) + 0.5) / len(members)
    return shuffled[np.argsort(quantile[shuffled], kind="stable")]


def split_train_val(images, labels, val_fraction, seed, limit=None):
    """Hold out a stratified validation set, then keep `limit` training images (all of them when None)."""
    order = stratified_order(labels, seed)
    n_val = round(len(labels) * val_fraction)
    if not 0 < n_val < len(labels):
        raise DataError(f"--val-fraction {val_fraction} holds out {n_val:,} of the {len(labels):,} training images; "
                        "both parts need at least one (0.1 is usual)")
    val, train = order[:n_val], order[n_val:]
    if limit is not None:
        if limit > len(train):
            raise DataError(f"--limit {limit} is more than the {len(train):,} training images left after "
                            "holding out the validation set; use a smaller --limit")
        train = train[:limit]
    # Sorted indices keep memory access sequential; the training pipeline shuffles anyway.
    train, val = np.sort(train), np.sort(val)
    return (images[train], labels[train]), (images[val], labels[val])


# ---------------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------------


def make_dataset(images, labels, batch_size, *, shuffle=False, seed=None, augment="none", shift=None):
    """A tf.data pipeline over in-memory uint8 images: (batch, 28, 28, 1) float32 in 0-255, integer labels.
    `augment` (augment_batch) alters each batch; its shifts move an image by up to `shift` pixels each way.

    The arrays are already in memory, so there is nothing to cache; shuffling, batching, the cast and the
    augmentation run inside TensorFlow on whole batches, and prefetching overlaps them with training.
    Scaling to 0-1 happens in the model's first layer, so a saved model takes raw pixels.

    Autotuning is off: deleting an epoch's iterator waits for tf.data's autotuning thread to wake, which left
    the cores idle for 10-20 s at the start of some epochs (docs/experiments.md). Maps over whole batches need
    little parallelism, so fixed small values train as fast.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels.astype("int32")))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=PIPELINE_DEPTH)
    if augment in SHIFTING and not shift:
        raise ValueError(f"augment={augment!r} needs shift, the most pixels an image may move")
    if augment != "none":
        # Stateless random ops, fed a fresh seed per batch and per epoch: reproducible under --deterministic
        # (which refuses unseeded random ops), yet different every epoch.
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, batch_seeds).map(
            lambda batch, batch_seed: (augment_batch(batch[0], batch_seed, augment, shift), batch[1]),
            num_parallel_calls=PIPELINE_DEPTH)
    return untuned(ds.prefetch(PIPELINE_DEPTH))


# Images per call when predicting on a whole set: big enough to amortise the call, small enough for memory.
PREDICT_BATCH = 500


def image_batches(images, batch_size=PREDICT_BATCH):
    """`images` (already the model's input) in batches for model.predict, without autotuning (see make_dataset):
    Keras's own pipeline for NumPy arrays stalled a predict call by seconds when its iterator was deleted."""
    import tensorflow as tf

    return untuned(tf.data.Dataset.from_tensor_slices(images).batch(batch_size).prefetch(PIPELINE_DEPTH))


def untuned(dataset):
    """`dataset` with tf.data's autotuning off."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def augment_batch(images, seed, augment, shift=None):
    """Mirror each image with probability 1/2 ("flip"), then also move it by up to `shift` pixels each way
    ("flip-shift"), then also erase a rectangle of it ("flip-shift-erase")."""
    import tensorflow as tf

    flip_seed, shift_seed, erase_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    images = tf.image.stateless_random_flip_left_right(images, flip_seed)  # independently for each image
    if augment in SHIFTING:
        images = random_shift(images, shift, shift_seed)
    if augment == "flip-shift-erase":
        images = random_erase(images, erase_seed)
    return images


def random_shift(images, pixels, seed):
    """Move each image of a batch by its own random whole-pixel offset of up to `pixels`, filling with black.

    Zero padding then a per-image crop, done as two batched gathers: exact integer shifts, no interpolation blur.
    """
    import tensorflow as tf

    batch, side = tf.shape(images)[0], images.shape[1]
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]])
    offsets = tf.random.stateless_uniform([batch, 2], seed, 0, 2 * pixels + 1, dtype=tf.int32)
    window = tf.range(side)
    rows = offsets[:, :1] + window  # (batch, side)
    cols = offsets[:, 1:] + window
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def random_erase(images, seed):
    """Random erasing: with probability ERASE_PROBABILITY, replace a random rectangle of each image of a batch
    by uniform noise in 0-255. One mask for the whole batch, built by broadcasting: no per-image Python."""
    import tensorflow as tf

    batch, side = tf.shape(images)[0], images.shape[1]
    area_seed, aspect_seed, place_seed, apply_seed, noise_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5))
    area = tf.random.stateless_uniform([batch], area_seed, *ERASE_AREA) * side * side
    low, high = (math.log(ratio) for ratio in ERASE_ASPECT)  # uniform in log scale: tall as likely as wide
    aspect = tf.exp(tf.random.stateless_uniform([batch], aspect_seed, low, high))
    height = tf.clip_by_value(tf.round(tf.sqrt(area * aspect)), 1, side)
    width = tf.clip_by_value(tf.round(tf.sqrt(area / aspect)), 1, side)
    top, left = tf.unstack(tf.random.stateless_uniform([2, batch], place_seed), axis=0)
    top, left = tf.floor(top * (side - height + 1)), tf.floor(left * (side - width + 1))
    pixels = tf.range(side, dtype=tf.float32)
    rows = (pixels >= top[:, None]) & (pixels < (top + height)[:, None])  # (batch, side)
    cols = (pixels >= left[:, None]) & (pixels < (left + width)[:, None])
    applied = tf.random.stateless_uniform([batch], apply_seed) < ERASE_PROBABILITY
    mask = rows[:, :, None, None] & cols[:, None, :, None] & applied[:, None, None, None]
    noise = tf.random.stateless_uniform(tf.shape(images), noise_seed, 0, 255, dtype=images.dtype)
    return tf.where(mask, noise, images)

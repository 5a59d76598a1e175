"""fmnist/data.py: loading, checking and splitting the IDX files, the augmentations and the training stream; a
fuzzed parser; bad data through the command line refused before anything is written."""

import gzip
import hashlib
import json

import numpy as np
import pytest
from conftest import ROOT, assert_clean_error, run_script

from fmnist.data import (
    ERASE_AREA,
    FILES,
    DataError,
    find_data_dir,
    load_fashion_mnist,
    make_dataset,
    parse_idx,
    random_erase,
    random_shift,
    read_idx_file,
    split_train_val,
    stratified_order,
)


def idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_gz(path, raw):
    path.write_bytes(gzip.compress(raw))
    return path


@pytest.fixture(scope="module")
def real():
    return load_fashion_mnist()


def test_shipped_files_load_with_the_right_shapes_and_labels(real):
    assert "shipped copy" in real.source
    assert real.x_train.shape == (60_000, 28, 28) and real.x_train.dtype == np.uint8
    assert real.x_test.shape == (10_000, 28, 28)
    assert np.bincount(real.y_train).tolist() == [6000] * 10
    assert np.bincount(real.y_test).tolist() == [1000] * 10
    assert 0 < real.x_train.mean() < 255  # real pictures, not an empty buffer


def test_split_is_stratified_disjoint_and_seeded(real):
    (x_tr, y_tr), (x_val, y_val) = split_train_val(real.x_train, real.y_train, 0.1, seed=1)
    assert len(x_val) == 6000 and len(x_tr) == 54_000
    assert np.bincount(y_val).tolist() == [600] * 10
    order = stratified_order(real.y_train, seed=1)
    assert sorted(order.tolist()) == list(range(60_000))  # a permutation: no image in both sets
    assert np.array_equal(order, stratified_order(real.y_train, seed=1))
    assert not np.array_equal(order, stratified_order(real.y_train, seed=2))


def test_limit_takes_a_stratified_subset(real):
    (x_tr, y_tr), _ = split_train_val(real.x_train, real.y_train, 0.1, seed=3, limit=1000)
    assert x_tr.shape == (1000, 28, 28)
    assert np.bincount(y_tr, minlength=10).tolist() == [100] * 10
    with pytest.raises(DataError, match="--limit"):
        split_train_val(real.x_train, real.y_train, 0.1, seed=3, limit=55_000)


@pytest.mark.parametrize("fraction", [1e-6, 0.999995])
def test_a_split_with_an_empty_side_is_refused(real, fraction):
    with pytest.raises(DataError, match="--val-fraction"):  # no validation images, or no training images
        split_train_val(real.x_train, real.y_train, fraction, seed=3)


def test_parse_idx_reads_a_well_formed_file():
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    assert np.array_equal(parse_idx(idx_bytes(images)), images)
    assert parse_idx(idx_bytes([3, 1, 4])).tolist() == [3, 1, 4]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x00\x00", "too short"),
        (idx_bytes([1, 2, 3], magic=0x12345678), "bad magic number"),
        (idx_bytes(np.zeros((2, 28, 28)))[:-5], "truncated"),
        (idx_bytes(np.zeros((2, 28, 28))) + b"xx", "unexpected bytes"),
        (idx_bytes(np.zeros((2, 27, 28))), "27x28"),
        # A header that claims 2^32 - 1 items must be refused without allocating them.
        (b"\x00\x00\x08\x01" + b"\xff\xff\xff\xff" + b"\x00" * 10, "truncated"),
    ],
)
def test_parse_idx_refuses_malformed_data(raw, message):
    with pytest.raises(DataError, match=message):
        parse_idx(raw, "x")


def test_read_idx_file_checks_gzip_counts_labels_and_checksum(tmp_path):
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_gz(labels, idx_bytes(np.zeros(10)))
    with pytest.raises(DataError, match="holds 10 items, expected 10,000"):
        read_idx_file(labels)

    write_gz(labels, idx_bytes(np.full(10_000, 10)))
    with pytest.raises(DataError, match="label 10 is outside 0-9"):
        read_idx_file(labels)

    write_gz(labels, idx_bytes(np.arange(10_000) % 10))
    with pytest.raises(DataError, match="checksum mismatch.*--no-verify"):
        read_idx_file(labels)
    assert read_idx_file(labels, verify=False)[:3].tolist() == [0, 1, 2]

    write_gz(labels, idx_bytes(np.zeros((10_000, 28, 28))))
    with pytest.raises(DataError, match="magic number 2051 but"):
        read_idx_file(labels)

    labels.write_bytes(b"plain bytes, not gzip")
    with pytest.raises(DataError, match="not a gzip file"):
        read_idx_file(labels)

    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(10_000)))[:-40])
    with pytest.raises(DataError, match="truncated gzip"):
        read_idx_file(labels)

    with pytest.raises(DataError, match="file not found"):
        read_idx_file(tmp_path / "train-labels-idx1-ubyte.gz")


def test_checksums_in_the_code_match_the_shipped_files():
    from fmnist.data import SHIPPED_DIR

    for name, (_, _, sha256) in FILES.items():
        assert hashlib.sha256(gzip.decompress((SHIPPED_DIR / name).read_bytes())).hexdigest() == sha256


def test_an_explicit_data_dir_is_the_only_place_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(DataError, match="no such folder"):
        find_data_dir(str(tmp_path / "nowhere"))
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="FASHION_MNIST_DIR must hold the four"):
        find_data_dir()


# ---------------------------------------------------------------------------------------------------------------
# Augmentation and the training stream
# ---------------------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("shift", [1, 2])
def test_the_training_stream_shifts_each_image_by_at_most_shift_pixels(shift):
    rng = np.random.default_rng(2)
    images = np.zeros((128, 28, 28), np.uint8)
    images[:, 5:23, 5:23] = rng.integers(1, 256, size=(128, 18, 18))  # content away from the border
    (x, _), = make_dataset(images, np.zeros(128), 128, augment="flip-shift", shift=shift, seed=0).as_numpy_iterator()
    reach = range(-shift, shift + 1)
    offsets = []
    for original, moved in zip(images, x[..., 0], strict=True):
        views = [(dy, dx) for image in (original, original[:, ::-1]) for dy in reach for dx in reach
                 if np.array_equal(np.roll(image, (dy, dx), axis=(0, 1)), moved)]
        assert views  # a mirror or not, moved by whole pixels within `shift`
        offsets += views
    assert {max(abs(dy), abs(dx)) for dy, dx in offsets} == set(range(shift + 1))  # every reach up to `shift`
    with pytest.raises(ValueError, match="needs shift"):
        make_dataset(images, np.zeros(128), 128, augment="flip-shift", seed=0)


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


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing the parser: whatever the bytes, a DataError or an array, quickly and without a huge allocation
# ---------------------------------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_data_error(raw):
    try:
        array = parse_idx(raw, "fuzz")
    except DataError:
        return
    assert array.nbytes <= len(raw)  # a header never makes it allocate more than the data it has


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_random_bytes_raise_only_data_error(raw):
    _parse_or_data_error(raw)


@FUZZ
@given(ndim=st.sampled_from([0, 1, 2, 3, 4, 255]), dtype=st.sampled_from([0x08, 0x09, 0x0D, 0xFF]),
       dims=st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=4), payload=st.binary(max_size=3000),
       cut=st.integers(0, 40))
def test_fuzz_mutated_headers_raise_only_data_error(ndim, dtype, dims, payload, cut):
    header = bytes([0, 0, dtype, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    raw = header + payload
    _parse_or_data_error(raw)
    _parse_or_data_error(raw[: len(raw) - cut])


@FUZZ
@given(position=st.integers(0, 4 * 28 * 28 + 15), value=st.integers(0, 255))
def test_fuzz_one_changed_byte_in_a_real_file_raises_only_data_error(position, value):
    raw = bytearray(idx_bytes(np.zeros((4, 28, 28))))
    raw[position] = value
    _parse_or_data_error(bytes(raw))


@settings(max_examples=50, deadline=2000)
@given(st.binary(max_size=500))
def test_fuzz_a_corrupt_gz_file_raises_only_data_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(content)[: max(10, len(content))] if content[:1] == b"\x00" else content)
    with pytest.raises(DataError):
        read_idx_file(path)


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        block = bytes(1 << 20)
        for _ in range(60):  # 60 MB of zeros, about 60 KB compressed
            f.write(block)
    with pytest.raises(DataError, match="decompresses to more than"):
        read_idx_file(bomb)


# ---------------------------------------------------------------------------------------------------------------
# Bad data through the command line: refused before TensorFlow loads, so each costs well under a second
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_missing_data_names_the_folder(tmp_path):
    proc = run_script("fashion_mnist.py", "--data-dir", tmp_path / "nowhere", "--out", tmp_path)
    assert_clean_error(proc, 1, "nowhere", "no such folder")


def _idx(array, magic=None, dims=None):
    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (dims or array.shape))
    return header + array.tobytes()


def _real_labels():
    import gzip

    import numpy as np

    raw = gzip.decompress((ROOT / "data" / "fashion" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return np.frombuffer(raw, np.uint8, offset=8).copy()


def _broken_files():
    """file name -> (what to write instead of it (None: no file), the message expected)."""
    import gzip

    import numpy as np

    labels = _real_labels()
    changed = labels.copy()
    changed[0] = (changed[0] + 1) % 10
    outside = labels.copy()
    outside[5] = 12
    real_gz = gzip.compress(_idx(labels))
    return {
        "missing file": ("t10k-labels-idx1-ubyte.gz", None, "file not found"),
        "truncated gzip": ("t10k-labels-idx1-ubyte.gz", real_gz[: len(real_gz) // 2], "truncated gzip"),
        "not gzip": ("t10k-labels-idx1-ubyte.gz", b"P3 28 28 255\n0 0 0", "not a gzip file"),
        "wrong magic": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(labels, magic=0x0901)), "bad magic number"),
        "images for labels": ("t10k-labels-idx1-ubyte.gz",
                              gzip.compress(_idx(np.zeros((10_000, 28, 28)))), "magic number 2051 but"),
        "wrong dimensions": ("t10k-images-idx3-ubyte.gz", gzip.compress(_idx(np.zeros((10, 32, 32)))), "32x32"),
        "count mismatch": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(labels[:9_999])),
                           "holds 9,999 items, expected 10,000"),
        "label outside 0-9": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(outside)), "label 12 is outside 0-9"),
        "checksum mismatch": ("t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(changed)), "checksum mismatch"),
    }


def _data_dir_with(tmp_path, name, content):
    """A copy of the shipped data folder (links to the real files) with `name` replaced by `content`."""
    folder = tmp_path / "data"
    folder.mkdir()
    for real in (ROOT / "data" / "fashion").glob("*.gz"):
        (folder / real.name).symlink_to(real)
    (folder / name).unlink()
    if content is not None:
        (folder / name).write_bytes(content)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_broken_files()))
def test_bad_data_is_refused_in_one_line_and_nothing_is_written(tmp_path, case):
    name, content, message = _broken_files()[case]
    data_dir = _data_dir_with(tmp_path, name, content)
    out = tmp_path / "out"
    (out / "history").mkdir(parents=True)
    earlier = out / "history" / "earlier.json"
    earlier.write_text('{"run": "earlier"}')
    proc = run_script("fashion_mnist.py", "--data-dir", data_dir, "--out", out, "--limit", 500, "--epochs", 1)
    assert_clean_error(proc, 1, name, message)
    assert sorted(p.name for p in out.rglob("*")) == ["earlier.json", "history"]  # nothing new, nothing changed
    assert earlier.read_text() == '{"run": "earlier"}'


@pytest.mark.slow
def test_no_verify_trains_on_data_modified_on_purpose(tmp_path):
    name, content, _ = _broken_files()["checksum mismatch"]
    data_dir = _data_dir_with(tmp_path, name, content)
    proc = run_script("fashion_mnist.py", "--data-dir", data_dir, "--no-verify", "--limit", 500, "--val-fraction",
                      0.02, "--epochs", 1, "--out", tmp_path, "--run-name", "modified")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "history" / "modified.json").read_text())
    assert record["status"] == "completed" and record["hyperparameters"]["verify"] is False
    assert str(data_dir) in record["data_source"]

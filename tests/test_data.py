import gzip
import hashlib

import numpy as np
import pytest

from fmnist.data import (
    FILES,
    DataError,
    find_data_dir,
    load_fashion_mnist,
    parse_idx,
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

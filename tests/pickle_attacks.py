"""Hostile history pickles, built with the real pickler: each stands for a class of attack on the loader."""

import collections
import pickle

import numpy as np


class _Reduces:
    """Pickles as `function(*args)`, followed by a BUILD with `state` when given."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def _reconstruct():
    return np.ndarray.__reduce__(np.zeros(1))[0]  # numpy._core.multiarray._reconstruct, whatever NumPy calls it


def _scalar():
    return np.float64(0).__reduce__()[0]


def dtype_with_field_past_its_end():
    """A dtype whose field lies a gigabyte past its 8-byte item: NumPy's __setstate__ does not check offsets, so
    reading the field reads (or writing it writes) far outside the buffer."""
    bad = _Reduces(np.dtype, ("V8", False, True),
                   (3, "|", None, ("x",), {"x": (np.dtype("f8"), 2**30)}, 8, 1, 0x10))
    array = _Reduces(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (1,), bad, False, b"\0" * 8))
    return {"loss": array, "accuracy": [_Reduces(_scalar(), (bad, b"\0" * 8))]}


def numeric_dtype_with_fields_in_its_state():
    """A dtype named f8 whose BUILD state makes it structured."""
    bad = _Reduces(np.dtype, ("f8", False, True),
                   (3, "<", None, ("x",), {"x": (np.dtype("f8"), 2**30)}, 8, 1, 0x10))
    return {"loss": [_Reduces(_scalar(), (bad, b"\0" * 8))]}


def ndarray_with_zero_strides(count=10**7):
    """numpy.ndarray(shape, dtype, buffer, offset, strides) called by the pickle: 8 bytes become `count` values."""
    return {"loss": _Reduces(np.ndarray, ((count,), np.dtype("f8"), b"\0" * 8, 0, (0,)))}


def array_with_huge_shape():
    """A well-formed array state whose shape claims 10^12 values with 8 bytes of data."""
    return {"loss": _Reduces(_reconstruct(), (np.ndarray, (0,), b"b"),
                             (1, (10**12,), np.dtype("f8"), False, b"\0" * 8))}


def array_of_two_dimensions():
    return {"loss": np.zeros((2, 2))}


def object_array():
    return {"loss": np.array([1.0, "x"], dtype=object)}


def structured_array():
    return {"loss": np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])}


def ordered_dict_whose_items_are_replaced():
    """BUILD on an OrderedDict sets its attributes: `items` becomes `dict`, so the history reads as empty."""
    return _Reduces(collections.OrderedDict, ((("loss", [1.0]),),), {"items": dict})


def huge_list(count=10**7):
    """Ten million floats: 90 MB of file."""
    return {"loss": [0.5] * count}


def huge_list_of_one_memoized_float(count=10**7):
    """Ten million references to one memoized float, 2 bytes each: a 20 MB file, hand-written since the pickler
    does not memoize floats."""
    head = b"\x80\x04}\x94\x8c\x04loss\x94]\x94(G?\xe0\x00\x00\x00\x00\x00\x00\x94"  # {"loss": [0.5, ...
    return head + b"h\x03" * (count - 1) + b"es."


def list_copied_many_times():
    """list(x) again and again: each copy costs the file a few bytes and memory the whole list."""
    base = [0.5] * 100_000
    return {f"m{i}": _Reduces(list, (base,)) for i in range(200)}


def repr_of_a_big_list():
    return {"loss": _Reduces(str, ([0.5] * 100_000,))}


_HASH_MODULUS = 2**61 - 1  # every multiple of it hashes to 0: a dict or set of them takes quadratic time


def _colliding_ints(count):
    """LONG1 opcodes of `count` different ints with the same hash (built as bytes: a real dict of them would take
    the pickler quadratic time too)."""
    return [b"\x8a" + bytes([len(n)]) + n for n in (pickle.encode_long(k * _HASH_MODULUS) for k in range(1, count + 1))]


def dict_of_colliding_int_keys(count=100_000):
    """{int: 0.5, ...} with every key hashing alike: building it takes quadratic time."""
    half = b"G?\xe0\x00\x00\x00\x00\x00\x00"  # BINFLOAT 0.5
    return b"\x80\x02}(" + b"".join(key + half for key in _colliding_ints(count)) + b"u."


def set_of_colliding_ints(count=100_000):
    return b"\x80\x04\x8f(" + b"".join(_colliding_ints(count)) + b"\x90."


def memo_indices_that_collide(count=100_000):
    """Protocol 0 writes memo indices as decimal text, so they can be any size: all of these collide."""
    return b"(l" + b"".join(b"F0.5\np%d\na" % (k * _HASH_MODULUS) for k in range(1, count)) + b"."


ATTACKS = {
    "dtype-field-past-end": dtype_with_field_past_its_end,
    "dtype-state-with-fields": numeric_dtype_with_fields_in_its_state,
    "ndarray-zero-strides": ndarray_with_zero_strides,
    "array-huge-shape": array_with_huge_shape,
    "array-2d": array_of_two_dimensions,
    "array-object": object_array,
    "array-structured": structured_array,
    "ordered-dict-build": ordered_dict_whose_items_are_replaced,
    "huge-list": huge_list,
    "memoized-huge-list": huge_list_of_one_memoized_float,
    "list-copies": list_copied_many_times,
    "str-of-list": repr_of_a_big_list,
    "colliding-dict-keys": dict_of_colliding_int_keys,
    "colliding-set": set_of_colliding_ints,
    "colliding-memo": memo_indices_that_collide,
}


def write_attack(name, path, protocol=4):
    payload = ATTACKS[name]()
    path.write_bytes(payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol))
    return path

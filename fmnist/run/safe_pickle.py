"""Load a pickle that may come from anyone, admitting only plain data: what a Keras History.history can hold.

Loading a pickle calls whatever the file names, so a normal unpickler runs code. Even NumPy's own classes are
unsafe here: `numpy.dtype.__setstate__` does not check field offsets (a segfault), and `numpy.ndarray` called
through the pickle takes zero strides (a few bytes become gigabytes). So no NumPy callable is ever reached: the
names that real NumPy pickles use map to the checked constructors below, which accept only numeric dtypes and
0-D or 1-D arrays with exactly their bytes, and return plain Python numbers. BUILD (`__setstate__`) is refused on
everything but those constructors' own placeholders. Every opcode and every value counts against a budget, so
memory stays bounded whatever the file holds.
"""

import _compat_pickle
import io
import pickle
import re

from fmnist.errors import UserError

MAX_VALUES = 1_000_000  # numbers and container items in one file; a long Keras history holds tens of thousands
MAX_OPCODES = 3 * MAX_VALUES  # each value takes at least one opcode; the rest is structure
# NumPy's own dtype names in pickles (dtype.str without the byte order): bool, ints, unsigned ints, floats.
_NUMERIC_DTYPE = re.compile(r"b1|[iu][1248]|f[248]")


class UnsafePickleError(UserError):
    """The pickle holds something other than plain data, or more of it than a history can."""


class _DtypeSpec:
    """What `numpy.dtype(spec, align, copy)` in a pickle stands for, before NumPy sees it."""

    def __init__(self, spec, byteorder="="):
        self.spec, self.byteorder = spec, byteorder

    def __setstate__(self, state):
        # NumPy writes (3, byteorder, None, None, None, -1, -1, 0) for a simple dtype (4 and a metadata None
        # when it has metadata): any subarray, names, fields, explicit sizes or flags mean a structured dtype.
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _refused("a dtype with a state NumPy never writes")
        byteorder, *rest = state[1:]
        if byteorder not in ("<", ">", "|", "=") or rest[:6] != [None, None, None, -1, -1, 0] or any(rest[6:]):
            raise _refused("a structured or non-numeric dtype")
        self.byteorder = byteorder

    def numpy_dtype(self):
        import numpy as np

        dtype = np.dtype(("" if self.byteorder == "|" else self.byteorder) + self.spec)
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            raise _refused("a non-numeric dtype")
        return dtype


class _ArrayInProgress:
    """What `_reconstruct(ndarray, (0,), b"b")` in a pickle stands for: an array whose BUILD brings the data."""

    def __init__(self, unpickler):
        self.unpickler = unpickler
        self.value = None

    def __setstate__(self, state):
        # (version, shape, dtype, is_fortran, data); NumPy also reads the older form without the version.
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4 or not isinstance(state[2], bool):
            raise _refused("an array with a state NumPy never writes")
        shape, dtype, _, data = state
        self.value = self.unpickler.array_values(data, dtype, shape)


class _NotCallable:
    """`numpy.ndarray` is only a marker for _reconstruct: called directly it would take any strides."""

    def __call__(self, *args, **kwargs):
        raise _refused("numpy.ndarray called directly")


_NDARRAY = _NotCallable()


def _refused(what):
    return UnsafePickleError(f"it contains {what}, which is not plain data")


def _counted_opcode(load_opcode):
    def load(self):
        self.opcodes += 1
        if self.opcodes > MAX_OPCODES:
            raise UnsafePickleError(f"it holds more than {MAX_VALUES:,} values, more than a history can")
        load_opcode(self)

    return load


def _charged_memo_get(load_opcode):
    def load(self):
        self.charge(1)  # a memoized object, repeated, costs memory as a new one would
        load_opcode(self)

    return load


class _PlainDataUnpickler(pickle._Unpickler):  # noqa: SLF001 - the Python one: its opcodes can be overridden
    """Admits plain data and NumPy numbers only, and refuses BUILD on anything but its own placeholders."""

    dispatch = {code: _counted_opcode(load) for code, load in pickle._Unpickler.dispatch.items()}  # noqa: SLF001

    def __init__(self, raw):
        super().__init__(io.BytesIO(raw))
        self.opcodes = 0
        self.values = 0

    def charge(self, count):
        self.values += count
        if self.values > MAX_VALUES:
            raise UnsafePickleError(f"it holds more than {MAX_VALUES:,} values, more than a history can")

    def load_build(self):
        target = self.stack[-2] if len(self.stack) > 1 else None
        if not isinstance(target, (_DtypeSpec, _ArrayInProgress)):
            raise _refused(f"a BUILD (__setstate__) on {type(target).__name__}")
        super().load_build()

    dispatch[pickle.BUILD[0]] = _counted_opcode(load_build)

    def load_put(self):
        index = int(self.readline()[:-1])
        if not 0 <= index < 2**32:  # the binary opcodes' range; huge ones could all collide in the memo's hash table
            raise _refused(f"a memo index of {str(index)[:60]}")
        self.memo[index] = self.stack[-1]

    def load_dict(self):
        self.check_keys(self.stack[::2])
        super().load_dict()

    def load_appends(self):
        self.charge(len(self.stack))  # the items since the MARK
        super().load_appends()

    def load_setitems(self):
        self.charge(len(self.stack) // 2)
        self.check_keys(self.stack[::2])
        super().load_setitems()

    def load_append(self):
        self.charge(1)
        super().load_append()

    def load_setitem(self):
        self.charge(1)
        self.check_keys(self.stack[-2:-1])
        super().load_setitem()

    def load_set(self):
        raise _refused("a set")

    @staticmethod
    def check_keys(keys):
        """A history's keys are metric names. Other keys (ints above all) could be chosen to collide in the
        dict's hash table and make loading take hours; a string's hash is randomized per process."""
        for key in keys:
            if type(key) is not str:
                raise _refused(f"a dict key of type {type(key).__name__}")

    for _opcode in (pickle.GET, pickle.BINGET, pickle.LONG_BINGET):
        dispatch[_opcode[0]] = _charged_memo_get(dispatch[_opcode[0]])

    for _opcode, _load in ((pickle.APPENDS, load_appends), (pickle.SETITEMS, load_setitems),
                           (pickle.APPEND, load_append), (pickle.SETITEM, load_setitem), (pickle.PUT, load_put),
                           (pickle.DICT, load_dict), (pickle.EMPTY_SET, load_set), (pickle.ADDITEMS, load_set),
                           (pickle.FROZENSET, load_set)):
        dispatch[_opcode[0]] = _counted_opcode(_load)
    del _opcode, _load

    def persistent_load(self, pid):
        raise _refused("a persistent id")

    def find_class(self, module, name):
        if self.proto < 3:  # Python 2 names, as pickle itself maps them (__builtin__ -> builtins)
            module, name = _compat_pickle.NAME_MAPPING.get(
                (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        module = {"numpy.core.multiarray": "numpy._core.multiarray",
                  "numpy.core.numeric": "numpy._core.numeric"}.get(module, module)
        constructors = {
            ("builtins", "list"): self._container(list), ("builtins", "tuple"): self._container(tuple),
            ("builtins", "dict"): self._container(dict), ("collections", "OrderedDict"): self._container(dict),
            ("builtins", "float"): self._number(float), ("builtins", "int"): self._number(int),
            ("builtins", "complex"): self._number(complex),
            ("_codecs", "encode"): self._latin1_encode, ("builtins", "bytes"): self._empty_bytes,
            ("numpy", "dtype"): self._dtype, ("numpy", "ndarray"): _NDARRAY,
            ("numpy._core.multiarray", "scalar"): self._scalar,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
        }
        if (module, name) not in constructors:
            raise _refused(f"{module}.{name}")
        return constructors[module, name]

    def _container(self, kind):
        """list, tuple, dict or OrderedDict (loaded as a dict) of existing items, counted."""

        def make(items=()):
            if not isinstance(items, (list, tuple, dict)):
                raise _refused(f"a {kind.__name__} made from a {type(items).__name__}")
            self.charge(len(items))
            if kind is dict:
                pairs = list(items.items()) if isinstance(items, dict) else items
                if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in pairs):
                    raise _refused("a dict made from something other than pairs")
                self.check_keys([key for key, _ in pairs])
            return kind(items)

        return make

    def _number(self, kind):
        def make(value=0, *more):
            if not all(isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 100) for v in (value, *more)):
                raise _refused(f"a {kind.__name__} made from something other than a number")
            self.charge(1)
            return kind(value, *more)

        return make

    def _latin1_encode(self, text, encoding="latin1"):
        """Protocols 0-2 store bytes (a NumPy array's data) as _codecs.encode(text, "latin1"). The real
        _codecs.encode takes any codec, so only this one use is let through."""
        if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
            raise _refused(f"_codecs.encode with codec {encoding!r}")
        return text.encode("latin1")

    def _empty_bytes(self, *args):
        """Protocols 0-2 write empty bytes (an empty array's data) as bytes()."""
        if args:
            raise _refused("builtins.bytes with arguments")
        return b""

    def _dtype(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or not _NUMERIC_DTYPE.fullmatch(spec) or align is not False:
            raise _refused(f"numpy.dtype({spec!r}), not a numeric dtype")
        return _DtypeSpec(spec)

    def _scalar(self, dtype, data):
        import numpy as np

        if not isinstance(dtype, _DtypeSpec) or not isinstance(data, (bytes, bytearray)):
            raise _refused("a NumPy scalar that is not a number")
        dtype = dtype.numpy_dtype()
        if len(data) != dtype.itemsize:
            raise _refused("a NumPy scalar whose size does not match its dtype")
        self.charge(1)
        return np.frombuffer(bytes(data), dtype)[0].item()

    def _reconstruct(self, subtype, shape, typecode):
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise _refused("numpy._core.multiarray._reconstruct of something other than an empty array")
        return _ArrayInProgress(self)

    def _frombuffer(self, data, dtype, shape, order="C"):
        if order not in ("C", "F"):
            raise _refused("an array with an unknown order")
        return self.array_values(data, dtype, shape)

    def array_values(self, data, dtype, shape):
        """A 0-D or 1-D numeric array's values as Python numbers, from exactly its bytes."""
        import numpy as np

        if not isinstance(dtype, _DtypeSpec) or not isinstance(data, (bytes, bytearray)):
            raise _refused("a NumPy array that is not of numbers")
        if not isinstance(shape, tuple) or len(shape) > 1 or not all(type(n) is int and n >= 0 for n in shape):
            raise _refused(f"a NumPy array of shape {shape!r}, not 0-D or 1-D")
        count = shape[0] if shape else 1
        self.charge(count)
        dtype = dtype.numpy_dtype()
        if len(data) != count * dtype.itemsize:
            raise _refused("a NumPy array whose data does not match its shape")
        values = np.frombuffer(bytes(data), dtype).tolist()  # a fresh, well-formed array of its own bytes
        return values if shape else values[0]


def load_plain_pickle(raw: bytes):
    """The plain data (dicts, lists, tuples, numbers, strings) in the pickle `raw`; NumPy arrays come back as
    lists and NumPy scalars as Python numbers. Raises UnsafePickleError, or whatever a corrupt pickle raises."""
    data = _PlainDataUnpickler(raw).load()
    return _finished(data)


def _finished(data):
    """Arrays become their values, at the two levels where a history holds them: {metric: array or list of
    scalars}. An array whose BUILD never came is not data."""

    def value(item):
        if isinstance(item, _ArrayInProgress):
            if item.value is None:
                raise _refused("an array without its data")
            return item.value
        if isinstance(item, _DtypeSpec):
            raise _refused("a bare dtype")
        return item

    if not isinstance(data, dict):
        return value(data)
    return {key: [value(item) for item in values] if isinstance(values, (list, tuple)) else value(values)
            for key, values in data.items()}

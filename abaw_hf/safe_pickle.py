"""The one rule for pickles read from data files: numpy arrays in plain containers, nothing that runs code.

Feature files of the authors' code (`np.save` of a `{video: {frame: vector}}` dict) and the VGGFace2 weight file
are pickles. Unpickling can call any importable function, so every pickle the package reads goes through
`RestrictedUnpickler`: it rebuilds numpy arrays, dtypes and scalars and Python's dict/list/tuple/str/int/float
(which need no import at all), and refuses any other class or function, naming it, before anything runs.
Full unpickling happens only with an explicit opt-in (`allow_pickle=True`, CLI `--allow-pickle`).
PyTorch checkpoints use `torch.load(weights_only=True)`, PyTorch's own form of the same rule.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import UserError

# (module, name) pairs a pickle of numpy data needs; numpy 1.x writes numpy.core, numpy 2.x numpy._core
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol-2 pickles spell bytes (an array's raw data)
}


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A pickle that needs a class or function outside the allowed numpy/builtin set."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes, scalars and plain containers; refuses every other global by name."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"{module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 keeps numpy.core only as a shim
        return getattr(importlib.import_module(module), name)


def restricted_load(handle: IO[bytes], *, encoding: str = "latin1") -> Any:
    """Unpickle from an open binary file with the restricted rule (latin1 also reads Python 2 numpy pickles)."""
    return RestrictedUnpickler(handle, encoding=encoding).load()


def refusal(path: str | Path, error: UnsafePickleError) -> UnsafePickleError:
    """The message for a refused pickle: which file, which class, and the opt-in."""
    return UnsafePickleError(
        f"{path}: the pickle inside needs {error}, which a data file never needs, so nothing was loaded; "
        "if you trust the file, pass --allow-pickle (allow_pickle=True)"
    )


def load_npy(path: str | Path, *, allow_pickle: bool = False) -> Any:
    """An `.npy` file. Object arrays (pickles) go through `RestrictedUnpickler` unless `allow_pickle`."""
    path = Path(path)
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(handle)
        if not dtype.hasobject:
            return np.load(path, allow_pickle=False)
        if allow_pickle:
            return np.load(path, allow_pickle=True)
        try:
            return restricted_load(handle)
        except UnsafePickleError as error:
            raise refusal(path, error) from None


def load_plain_pickle(path: str | Path, *, allow_pickle: bool = False) -> Any:
    """A plain pickle file (e.g. VGGFace2's numpy weights): restricted, or fully unpickled with the opt-in."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return restricted_load(io.BytesIO(data))
    except UnsafePickleError as error:
        if not allow_pickle:
            raise refusal(path, error) from None
    return pickle.loads(data, encoding="latin1")  # the caller said the file is trusted


class _JoblibArrayHeader:
    """Stands in for joblib's NumpyArrayWrapper: only receives its attributes (shape, dtype, order...)."""


class _JoblibArrayUnpickler(pickle._Unpickler):
    """joblib's array format with the restricted rule: a pickle of NumpyArrayWrapper headers, each followed by the
    array's raw bytes. The pure-Python unpickler is used because the raw bytes are read where BUILD completes a
    header, as joblib's own reader does; no joblib (or any other) code runs."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _JoblibArrayHeader
        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype")}:
            return getattr(np, name)
        raise UnsafePickleError(f"{module}.{name}")

    def load_build(self) -> None:
        super().load_build()
        if isinstance(self.stack[-1], _JoblibArrayHeader):
            self.stack[-1] = self._read_array(self.stack[-1])

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, header: _JoblibArrayHeader) -> np.ndarray:
        dtype, shape, order = header.dtype, tuple(header.shape), header.order
        if header.subclass is not np.ndarray or not isinstance(dtype, np.dtype) or dtype.hasobject or order not in "CF":
            raise UnsafePickleError(f"a joblib array other than a plain numeric ndarray ({header.subclass}, {dtype})")
        if getattr(header, "numpy_array_alignment_bytes", None) is not None:
            self.read(self.read(1)[0])  # joblib pads each array to its alignment: one length byte, then padding
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        data = self.read(size)
        if len(data) != size:
            raise pickle.UnpicklingError("joblib file ends inside an array")
        array = np.frombuffer(data, dtype=dtype).copy()
        return array.reshape(shape[::-1]).T if order == "F" else array.reshape(shape)


def load_joblib_arrays(data: bytes) -> Any:
    """The numpy arrays of an uncompressed joblib dump (e.g. weights shipped in a package), read with the
    restricted rule: only joblib's array headers, numpy arrays and dtypes and plain containers."""
    return _JoblibArrayUnpickler(io.BytesIO(data), encoding="latin1").load()

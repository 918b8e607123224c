"""A restricted unpickler for the CIFAR python batches.

The CIFAR files are pickles, and a pickle can name any importable callable and call it.
This unpickler resolves only the handful of globals a pickled numpy array needs and
refuses every other one *before* anything is called, so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robustact.data.base import DatasetError

__all__ = ["SafeUnpickler", "UnsafePickleError", "safe_load"]


class UnsafePickleError(DatasetError):
    """A pickle asked for a global outside the allow-list."""


def _reconstruct() -> Callable[..., Any]:
    # numpy >= 2 keeps it in numpy._core; importing numpy.core there warns (deprecated).
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(mod)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy's multiarray._reconstruct is not available")


# (module, name) -> object. Resolved here, not by import, so nothing else can be reached.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that admits only numpy's ndarray/dtype reconstruction.

    Use as ``SafeUnpickler(f, encoding="bytes").load()``; containers (dict, list, tuple,
    bytes, str, numbers) need no globals and load as usual.
    """

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays, dicts, "
                "lists and scalars are allowed in dataset files; the file is not an official "
                "CIFAR batch (delete it and fetch it again)"
            )
        return obj


def safe_load(path: str | Path) -> Any:
    """Load a dataset pickle (Python 2 era: byte-string keys) with :class:`SafeUnpickler`."""
    path = Path(path)
    data = path.read_bytes()
    try:
        obj = SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise DatasetError(
            f"{path}: corrupt or truncated pickle ({type(e).__name__}: {e}); fetch it again"
        ) from e
    _refuse_object_arrays(obj, path)
    return obj


def _refuse_object_arrays(obj: Any, path: Path) -> None:
    # An object-dtype array would hold arbitrary (already restricted) objects; CIFAR has none.
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise DatasetError(f"{path}: object arrays are not expected in a dataset file")
    if isinstance(obj, dict):
        for v in obj.values():
            _refuse_object_arrays(v, path)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _refuse_object_arrays(v, path)

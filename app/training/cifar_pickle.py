"""Reading CIFAR-10's python batch files without running code from them.

The files are pickles, and a plain `pickle.load` calls whatever callable a file names: a
crafted `data_batch_1` could run any command before the loader sees that it is no CIFAR
batch. This unpickler resolves only the globals the CIFAR-10 python format needs, and
refuses every other name before anything is called.

What a batch references: dicts, lists, ints and strings are pickle opcodes, not globals.
The image array is rebuilt through numpy's `_reconstruct` (protocol 2, as the CIFAR files
are written; `_frombuffer` from protocol 5) with `ndarray` and `dtype`, named under
`numpy.core` by numpy 1 and `numpy._core` by numpy 2. Python 3 writes bytes at protocol 2
as `_codecs.encode(text, "latin1")`, and empty bytes as `__builtin__.bytes()`.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import IO, Any

import numpy as np


class ForbiddenGlobal(pickle.UnpicklingError):
    """The file names a callable that no CIFAR-10 batch uses."""


def _numpy_core(name: str) -> ModuleType:
    """numpy 2's private `numpy._core.NAME`, else numpy 1's `numpy.core.NAME`."""
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """`_codecs.encode` limited to the one codec pickle uses for bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ForbiddenGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    reconstruct = _numpy_core("multiarray")._reconstruct
    frombuffer = _numpy_core("numeric")._frombuffer
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_bytes,
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of a CIFAR-10 python batch."""

    _ALLOWED = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        found = self._ALLOWED.get((module, name))
        if found is None:
            # The names come from the file: shown escaped and cut short, on one line.
            named = ascii(f"{module}.{name}")
            named = named if len(named) <= 80 else named[:77] + "..."
            raise ForbiddenGlobal(f"it refers to {named}, which no CIFAR-10 batch does")
        return found


def load_batch(handle: IO[bytes]) -> Any:
    """The object a CIFAR-10 batch file holds; strings written by Python 2 stay bytes."""
    return CifarUnpickler(handle, encoding="bytes").load()

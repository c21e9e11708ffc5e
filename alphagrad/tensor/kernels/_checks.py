"""Input checks shared by the kernel wrappers: each names the op and the argument it rejects."""

from __future__ import annotations

import math

import numpy as np

from alphagrad.tensor.dtypes import FLOAT_DTYPES, INDEX_DTYPE


def float_array(op: str, name: str, a, dtype: np.dtype | None = None) -> np.ndarray:
    """``a`` as a C-contiguous float32/float64 array (of ``dtype`` when given), else TypeError."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{op}: {name} is {a.dtype} but the other inputs are {dtype}")
    return np.asarray(a, order="C")  # unlike ascontiguousarray, keeps 0-d arrays 0-d


def index_array(op: str, name: str, a) -> np.ndarray:
    """``a`` as a C-contiguous int64 array; any integer dtype is accepted, else TypeError."""
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu":
        kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{op}: {name} must be an integer numpy.ndarray (int64), got {kind}")
    return np.asarray(a, dtype=INDEX_DTYPE, order="C")


def same_shape(op: str, name: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {a.shape}, expected {tuple(shape)}")


def rows(op: str, name: str, a: np.ndarray) -> np.ndarray:
    """The (rows, C) view of ``a``: all leading axes flattened, the last axis kept."""
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"{op}: {name} needs a non-empty last axis, got shape {a.shape}")
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def output(op: str, out, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new C-contiguous array, or ``out`` after checking it can hold the result."""
    if out is None:
        return np.empty(shape, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != tuple(shape):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"{op}: out must be a {dtype} array of shape {tuple(shape)}, got {got}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous")
    return out

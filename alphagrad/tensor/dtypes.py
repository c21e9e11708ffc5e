"""Dtype policy: float32 by default, float64 for gradient checking, int64 for indices."""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPE = np.dtype(np.int64)

_default_float = np.dtype(np.float32)


def get_default_dtype() -> np.dtype:
    """The float dtype new tensors get when none is given (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype) -> None:
    """Make ``dtype`` (float32 or float64) the default for new float tensors."""
    global _default_float
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"set_default_dtype: only float32 and float64 are supported, got {dtype}")
    _default_float = dtype


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def result_float_dtype(*arrays: np.ndarray) -> np.dtype:
    """The float dtype an op on ``arrays`` computes in: float64 if any input is, else float32."""
    for a in arrays:
        if a.dtype == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)

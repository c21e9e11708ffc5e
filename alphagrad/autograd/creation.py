"""Tensor constructors, PyTorch's names: ``tensor``, ``zeros``, ``randn``, ..."""

from __future__ import annotations

from typing import Any

import numpy as np

from alphagrad.autograd.tensor import Tensor, _size
from alphagrad.tensor.dtypes import get_default_dtype
from alphagrad.tensor.random import generator


def _float_dtype(dtype) -> np.dtype:
    return get_default_dtype() if dtype is None else np.dtype(dtype)


def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor holding a copy of ``data`` (floats become float32 unless ``dtype`` says otherwise).

        >>> ag.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    """
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (no copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray, got {type(array).__name__}")
    return Tensor._wrap(array, False)


def zeros(*size, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_size(size), _float_dtype(dtype)), requires_grad=requires_grad)


def ones(*size, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_size(size), _float_dtype(dtype)), requires_grad=requires_grad)


def full(size, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = np.int64 if isinstance(fill_value, (int, np.integer)) and not isinstance(fill_value, bool) \
            else (np.bool_ if isinstance(fill_value, bool) else get_default_dtype())
    return Tensor(np.full(_size((size,)), fill_value, dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def arange(start: float, end: float | None = None, step: float = 1, dtype: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Evenly spaced values in [start, end); int64 when all arguments are ints."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if ints else get_default_dtype()
    return Tensor(np.arange(start, end, step, dtype=dtype), requires_grad=requires_grad)


def randn(*size, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the library's seeded generator."""
    data = generator().standard_normal(_size(size), dtype=np.float64).astype(_float_dtype(dtype))
    return Tensor._wrap(data, False).requires_grad_(requires_grad)


def rand(*size, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from the library's seeded generator."""
    data = generator().random(_size(size), dtype=np.float64).astype(_float_dtype(dtype))
    return Tensor._wrap(data, False).requires_grad_(requires_grad)


def randn_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples in ``t``'s shape (and dtype, unless ``dtype`` says otherwise)."""
    return randn(t.shape, dtype=dtype or (t.dtype if t.dtype.kind == "f" else None), requires_grad=requires_grad)


def rand_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) in ``t``'s shape (and dtype, unless ``dtype`` says otherwise)."""
    return rand(t.shape, dtype=dtype or (t.dtype if t.dtype.kind == "f" else None), requires_grad=requires_grad)


def randint(low: int, high: int | None = None, size=(), dtype: Any = None) -> Tensor:
    """Integers in [low, high) (``randint(high, size)`` also works, as in PyTorch)."""
    if high is None:
        low, high = 0, low
    data = generator().integers(low, high, size=_size((size,)), dtype=np.int64)
    return Tensor._wrap(data.astype(dtype) if dtype is not None else data, False)

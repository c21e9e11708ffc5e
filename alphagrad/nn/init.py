"""In-place initialisers, PyTorch's names (``nn.init.normal_(w, std=0.02)``), drawing from the
library generator (``ag.manual_seed``) straight into the parameter's memory."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import numpy as np

from alphagrad.autograd.tensor import Tensor
from alphagrad.nn.parameter import Parameter
from alphagrad.tensor.random import generator

_EMPTY = contextvars.ContextVar("empty_weights", default=False)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules whose parameters have their shapes but no memory and skip their init.

    For loading weights from a file: the model costs nothing until ``load_state_dict`` checks
    every shape against the file's tensors and adopts them, so a file whose config claims a huge
    model fails with a shape error instead of allocating it (accelerate's ``init_empty_weights``).

        >>> with nn.init.empty_weights():
        ...     model = GPT(config)
        >>> model.load_state_dict(arrays, assign=True)
    """
    token = _EMPTY.set(True)
    try:
        yield
    finally:
        _EMPTY.reset(token)


def empty(*shape: int, dtype: np.dtype) -> Parameter:
    """An uninitialised parameter; inside ``empty_weights()`` a read-only stand-in of the right
    shape whose zero strides take no memory."""
    if not _EMPTY.get():
        return Parameter(np.empty(shape, dtype))
    parameter = Parameter(np.empty(0, dtype))
    parameter.data = np.broadcast_to(np.zeros((), dtype), shape)
    return parameter


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples of N(mean, std²)."""
    if _EMPTY.get():
        return tensor
    generator().standard_normal(out=tensor.data, dtype=tensor.data.dtype)
    tensor.data *= tensor.data.dtype.type(std)
    tensor.data += tensor.data.dtype.type(mean)
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples of U(a, b)."""
    if _EMPTY.get():
        return tensor
    generator().random(out=tensor.data, dtype=tensor.data.dtype)
    tensor.data *= tensor.data.dtype.type(b - a)
    tensor.data += tensor.data.dtype.type(a)
    return tensor


def constant_(tensor: Tensor, value: float) -> Tensor:
    if _EMPTY.get():
        return tensor
    tensor.data.fill(value)
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1.0)


def fan_in_uniform_(tensor: Tensor, fan_in: int) -> Tensor:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what PyTorch's Linear starts from."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(tensor, -bound, bound)

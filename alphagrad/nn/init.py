"""In-place initialisers, PyTorch's names (``nn.init.normal_(w, std=0.02)``), drawing from the
library generator (``ag.manual_seed``) straight into the parameter's memory."""

from __future__ import annotations

import math

from alphagrad.autograd.tensor import Tensor
from alphagrad.tensor.random import generator


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples of N(mean, std²)."""
    generator().standard_normal(out=tensor.data, dtype=tensor.data.dtype)
    tensor.data *= tensor.data.dtype.type(std)
    tensor.data += tensor.data.dtype.type(mean)
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples of U(a, b)."""
    generator().random(out=tensor.data, dtype=tensor.data.dtype)
    tensor.data *= tensor.data.dtype.type(b - a)
    tensor.data += tensor.data.dtype.type(a)
    return tensor


def constant_(tensor: Tensor, value: float) -> Tensor:
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

"""The layers the models are built from: Linear, Embedding, LayerNorm, RMSNorm, Dropout, GELU.

    >>> layer = Linear(4, 3)
    >>> layer(ag.randn(2, 4)).shape
    (2, 3)
"""

from __future__ import annotations

import numpy as np

from alphagrad.autograd import functional as F
from alphagrad.autograd.tensor import Tensor
from alphagrad.nn import init
from alphagrad.nn.module import Module
from alphagrad.nn.parameter import Parameter
from alphagrad.tensor.dtypes import get_default_dtype
from alphagrad.tensor.kernels.gelu import check_form


def _empty(*shape: int, dtype=None) -> Parameter:
    return init.empty(*shape, dtype=np.dtype(dtype) if dtype is not None else get_default_dtype())


class Linear(Module):
    """``y = x @ weight.T + bias`` with weight (out_features, in_features), PyTorch's init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None):
        self.in_features, self.out_features = in_features, out_features
        self.weight = init.fan_in_uniform_(_empty(out_features, in_features, dtype=dtype),
                                           in_features)
        self.bias = init.fan_in_uniform_(_empty(out_features, dtype=dtype),
                                         in_features) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"bias={self.bias is not None}"


def project(proj: Linear, y: Tensor, residual: Tensor | None = None,
            dropout: Dropout | None = None) -> Tensor:
    """``dropout(proj(y))``, plus ``residual`` if given, added as the product is written
    (``F.residual_linear``) unless a dropout comes between: a transformer block's
    ``x + proj(y)`` without a pass of its own over the sum."""
    if dropout is not None and dropout.training and dropout.p > 0:
        out = dropout(proj(y))
        return out if residual is None else residual + out
    if residual is None:
        return proj(y)
    return F.residual_linear(residual, y, proj.weight, proj.bias)


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, looked up by integer id."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=None):
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = init.normal_(_empty(num_embeddings, embedding_dim, dtype=dtype))

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer normalisation over the last axis; ``bias=False`` drops the shift (as nanoGPT's)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, bias: bool = True, dtype=None):
        self.normalized_shape, self.eps = normalized_shape, eps
        self.weight = init.ones_(_empty(normalized_shape, dtype=dtype))
        self.bias = init.zeros_(_empty(normalized_shape, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"({self.normalized_shape},), eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(Module):
    """Root-mean-square normalisation over the last axis, scaled by ``weight`` (Llama's norm)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, dtype=None):
        self.normalized_shape, self.eps = normalized_shape, eps
        self.weight = init.ones_(_empty(normalized_shape, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"({self.normalized_shape},), eps={self.eps}"


class Dropout(Module):
    """Zero elements with probability ``p`` while training (scaling the rest); identity in eval."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GELU(Module):
    """GELU; ``approximate="tanh"`` is GPT-2's form."""

    def __init__(self, approximate: str = "none"):
        check_form("GELU", approximate)
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    """``max(x, 0)`` elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class SiLU(Module):
    """``x · sigmoid(x)`` (also called swish)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)

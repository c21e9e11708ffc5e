"""GELU, tanh approximation (GPT-2's): 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).

The kernels use the identity 0.5·(1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)), so the only
transcendental is ``fast_exp``, which vectorises. Both work elementwise on flat arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, same_shape
from alphagrad.tensor.kernels._exp import fast_exp


@kernel(parallel=True)
def _gelu_forward(x, out):
    # x, out: (n,)
    two_k = x.dtype.type(2.0 * math.sqrt(2.0 / math.pi))
    cubic = x.dtype.type(0.044715)
    one = x.dtype.type(1.0)
    for i in prange(x.size):
        v = x[i]
        out[i] = v / (one + fast_exp(-two_k * (v + cubic * v * v * v)))


@kernel(parallel=True)
def _gelu_backward(x, dout, dx):
    # x, dout, dx: (n,); d/dx x·s(2u) = s + x·s·(1 - s)·2u'(x)
    two_k = x.dtype.type(2.0 * math.sqrt(2.0 / math.pi))
    cubic = x.dtype.type(0.044715)
    one = x.dtype.type(1.0)
    three_cubic = x.dtype.type(3.0 * 0.044715)
    for i in prange(x.size):
        v = x[i]
        v2 = v * v
        s = one / (one + fast_exp(-two_k * (v + cubic * v2 * v)))
        dx[i] = dout[i] * (s + v * s * (one - s) * two_k * (one + three_cubic * v2))


def gelu_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """GELU (tanh approximation) of ``x``, any shape.

    >>> gelu_forward(np.array([0.0, 1.0], np.float32))
    array([0.      , 0.841192], dtype=float32)
    """
    x = float_array("gelu_forward", "x", x)
    out = output("gelu_forward", out, x.shape, x.dtype)
    _gelu_forward(x.reshape(-1), out.reshape(-1))
    return out


def gelu_backward(x: np.ndarray, dout: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``gelu_forward`` at ``x`` given the upstream gradient ``dout`` (same shape)."""
    x = float_array("gelu_backward", "x", x)
    dout = float_array("gelu_backward", "dout", dout, x.dtype)
    same_shape("gelu_backward", "dout", dout, x.shape)
    dx = output("gelu_backward", out, x.shape, x.dtype)
    _gelu_backward(x.reshape(-1), dout.reshape(-1), dx.reshape(-1))
    return dx

"""GELU, exact form: x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (PyTorch's default ``approximate="none"``).

GPT-2 uses the tanh form in ``gelu.py``; this one serves ``F.gelu(x)`` and ``nn.GELU()``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, same_shape


@kernel(parallel=True)
def _gelu_erf_forward(x, out):
    # x, out: (n,)
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    for i in prange(x.size):
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.erf(v * inv_sqrt2))


@kernel(parallel=True)
def _gelu_erf_backward(x, dout, dx):
    # x, dout, dx: (n,); d/dx x·Φ(x) = Φ(x) + x·φ(x)
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    inv_sqrt_2pi = 1.0 / math.sqrt(2.0 * math.pi)
    for i in prange(x.size):
        v = x[i]
        cdf = 0.5 * (1.0 + math.erf(v * inv_sqrt2))
        dx[i] = dout[i] * (cdf + v * inv_sqrt_2pi * math.exp(-0.5 * v * v))


def gelu_erf_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Exact GELU of ``x``, any shape."""
    x = float_array("gelu_erf_forward", "x", x)
    out = output("gelu_erf_forward", out, x.shape, x.dtype)
    _gelu_erf_forward(x.reshape(-1), out.reshape(-1))
    return out


def gelu_erf_backward(x: np.ndarray, dout: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``gelu_erf_forward`` at ``x`` given the upstream gradient ``dout``."""
    x = float_array("gelu_erf_backward", "x", x)
    dout = float_array("gelu_erf_backward", "dout", dout, x.dtype)
    same_shape("gelu_erf_backward", "dout", dout, x.shape)
    dx = output("gelu_erf_backward", out, x.shape, x.dtype)
    _gelu_erf_backward(x.reshape(-1), dout.reshape(-1), dx.reshape(-1))
    return dx

"""GELU in both of PyTorch's forms.

``approximate="tanh"`` (GPT-2's): 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
``approximate="none"`` (exact): x·Φ(x) = 0.5·x·(1 + erf(x/√2)).

The tanh kernels use the identity 0.5·(1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)), so the only
transcendental is ``fast_exp``, which vectorises; the exact ones take Φ from ``normal_cdf``, which
vectorises too. Both work elementwise on flat arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, same_shape
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._normal import normal_cdf
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

# GELU spends ~20 flops on each element, so a second thread pays off on far smaller inputs than
# for the memory-bound kernels (measured: 768 x 512 runs 2x faster on two threads).
PARALLEL_MIN_SIZE = 1 << 15


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


@kernel(parallel=True)
def _gelu_erf_forward(x, out):
    # x, out: (n,)
    for i in prange(x.size):
        v = x[i]
        out[i] = v * normal_cdf(v)


@kernel(parallel=True)
def _gelu_erf_backward(x, dout, dx):
    # x, dout, dx: (n,); d/dx x·Φ(x) = Φ(x) + x·φ(x)
    inv_sqrt_2pi = x.dtype.type(1.0 / math.sqrt(2.0 * math.pi))
    half = x.dtype.type(0.5)
    for i in prange(x.size):
        v = x[i]
        dx[i] = dout[i] * (normal_cdf(v) + v * inv_sqrt_2pi * fast_exp(-half * v * v))


_PAIRS = {"tanh": (_gelu_forward, _gelu_backward), "none": (_gelu_erf_forward, _gelu_erf_backward)}
FORMS = tuple(_PAIRS)  # the values ``approximate`` takes
_KERNELS = {
    (form, parallel): pair if parallel else tuple(serial_twin(k) for k in pair)
    for form, pair in _PAIRS.items() for parallel in (True, False)
}


def _kernels(op: str, approximate: str, size: int):
    if approximate not in _PAIRS:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _KERNELS[approximate, use_parallel(size, PARALLEL_MIN_SIZE)]


def gelu_forward(x: np.ndarray, out: np.ndarray | None = None,
                 approximate: str = "tanh") -> np.ndarray:
    """GELU of ``x``, any shape (tanh form unless ``approximate="none"``).

    >>> gelu_forward(np.array([0.0, 1.0], np.float32))
    array([0.      , 0.841192], dtype=float32)
    """
    x = float_array("gelu_forward", "x", x)
    forward, _ = _kernels("gelu_forward", approximate, x.size)
    out = output("gelu_forward", out, x.shape, x.dtype)
    forward(x.reshape(-1), out.reshape(-1))
    return out


def gelu_backward(x: np.ndarray, dout: np.ndarray, out: np.ndarray | None = None,
                  approximate: str = "tanh") -> np.ndarray:
    """Gradient of ``gelu_forward`` at ``x`` given the upstream gradient ``dout`` (same shape)."""
    x = float_array("gelu_backward", "x", x)
    dout = float_array("gelu_backward", "dout", dout, x.dtype)
    same_shape("gelu_backward", "dout", dout, x.shape)
    _, backward = _kernels("gelu_backward", approximate, x.size)
    dx = output("gelu_backward", out, x.shape, x.dtype)
    backward(x.reshape(-1), dout.reshape(-1), dx.reshape(-1))
    return dx

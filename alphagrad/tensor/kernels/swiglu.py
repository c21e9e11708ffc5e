"""SiLU and SwiGLU (Llama's MLP activation): silu(x) = x·sigmoid(x), swiglu(gate, up) =
silu(gate)·up, fused so the MLP makes one pass over its hidden activations instead of three.

The sigmoid is 1 / (1 + fast_exp(-x)), which vectorises. SiLU works on flat arrays; SwiGLU reads
gate and up as the two halves of each row of one (R, 2H) array, the output of one GEMM, and writes
their gradients back the same way.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, rows, same_shape
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

# about a dozen flops per element: like GELU, two threads pay off early
PARALLEL_MIN_SIZE = 1 << 13


@kernel(parallel=True)
def _silu_forward(x, out):
    # x, out: (n,)
    one = x.dtype.type(1.0)
    for i in prange(x.size):
        out[i] = x[i] / (one + fast_exp(-x[i]))


@kernel(parallel=True)
def _silu_backward(x, dout, dx):
    # x, dout, dx: (n,); d/dx x·s(x) = s·(1 + x·(1 − s))
    one = x.dtype.type(1.0)
    for i in prange(x.size):
        s = one / (one + fast_exp(-x[i]))
        dx[i] = dout[i] * s * (one + x[i] * (one - s))


@kernel(parallel=True)
def _swiglu_forward(x, out):
    # x: (R, 2H), gate then up in each row; out: (R, H)
    one = x.dtype.type(1.0)
    R, H = out.shape
    for i in prange(R):
        for j in range(H):
            g = x[i, j]
            out[i, j] = g / (one + fast_exp(-g)) * x[i, H + j]


@kernel(parallel=True)
def _swiglu_backward(x, dout, dx):
    # x, dx: (R, 2H), gate then up in each row; dout: (R, H)
    one = x.dtype.type(1.0)
    R, H = dout.shape
    for i in prange(R):
        for j in range(H):
            g, u, d = x[i, j], x[i, H + j], dout[i, j]
            s = one / (one + fast_exp(-g))
            dx[i, H + j] = d * g * s
            dx[i, j] = d * u * s * (one + g * (one - s))


_SERIAL = {k: serial_twin(k) for k in (_silu_forward, _silu_backward, _swiglu_forward,
                                       _swiglu_backward)}


def _pick(parallel_kernel, size: int):
    return parallel_kernel if use_parallel(size, PARALLEL_MIN_SIZE) else _SERIAL[parallel_kernel]


def silu_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """x·sigmoid(x) of ``x``, any shape.

    >>> silu_forward(np.array([0.0, 1.0]))
    array([0.        , 0.73105858])
    """
    x = float_array("silu_forward", "x", x)
    out = output("silu_forward", out, x.shape, x.dtype)
    _pick(_silu_forward, x.size)(x.reshape(-1), out.reshape(-1))
    return out


def silu_backward(x: np.ndarray, dout: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``silu_forward`` at ``x`` given the upstream gradient ``dout``."""
    op = "silu_backward"
    x = float_array(op, "x", x)
    dout = float_array(op, "dout", dout, x.dtype)
    same_shape(op, "dout", dout, x.shape)
    dx = output(op, out, x.shape, x.dtype)
    _pick(_silu_backward, x.size)(x.reshape(-1), dout.reshape(-1), dx.reshape(-1))
    return dx


def _halves(op: str, x: np.ndarray) -> np.ndarray:
    """``x`` (..., 2H) as (rows, 2H), checking its last axis splits into gate and up."""
    x = float_array(op, "x", x)
    if x.ndim == 0 or x.shape[-1] == 0 or x.shape[-1] % 2:
        raise ValueError(f"{op}: x must be (..., 2H), gate then up on its last axis, got shape "
                         f"{x.shape}")
    return rows(op, "x", x)


def swiglu_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """silu(gate)·up where ``x`` (..., 2H) holds gate then up on its last axis: (..., H).

    One projection makes both halves, so the MLP's up and gate GEMMs are one GEMM.

    >>> swiglu_forward(np.array([1.0, 2.0]))
    array([1.46211716])
    """
    op = "swiglu_forward"
    x2 = _halves(op, x)
    out = output(op, out, x.shape[:-1] + (x.shape[-1] // 2,), x.dtype)
    _pick(_swiglu_forward, out.size)(x2, out.reshape(x2.shape[0], -1))
    return out


def swiglu_backward(x: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """Gradient of ``swiglu_forward`` given the upstream gradient ``dout`` (..., H): dx
    (..., 2H), d(gate) then d(up), ready for one input-gradient GEMM."""
    op = "swiglu_backward"
    x2 = _halves(op, x)
    dout = float_array(op, "dout", dout, x.dtype)
    same_shape(op, "dout", dout, x.shape[:-1] + (x.shape[-1] // 2,))
    dx = np.empty_like(x2)
    _pick(_swiglu_backward, dout.size)(x2, dout.reshape(x2.shape[0], -1), dx)
    return dx.reshape(x.shape)

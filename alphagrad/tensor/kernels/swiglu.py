"""SiLU and SwiGLU (Llama's MLP activation): silu(x) = x·sigmoid(x), swiglu(gate, up) =
silu(gate)·up, fused so the MLP makes one pass over its hidden activations instead of three.

The sigmoid is 1 / (1 + fast_exp(-x)), which vectorises. All kernels work elementwise on flat
arrays.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, same_shape
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._serial import serial_twin

# about a dozen flops per element: like GELU, two threads pay off early
PARALLEL_MIN_SIZE = 1 << 15


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
def _swiglu_forward(gate, up, out):
    # gate, up, out: (n,)
    one = gate.dtype.type(1.0)
    for i in prange(gate.size):
        out[i] = gate[i] / (one + fast_exp(-gate[i])) * up[i]


@kernel(parallel=True)
def _swiglu_backward(gate, up, dout, dgate, dup):
    # gate, up, dout, dgate, dup: (n,)
    one = gate.dtype.type(1.0)
    for i in prange(gate.size):
        g = gate[i]
        s = one / (one + fast_exp(-g))
        dup[i] = dout[i] * g * s
        dgate[i] = dout[i] * up[i] * s * (one + g * (one - s))


_SERIAL = {k: serial_twin(k) for k in (_silu_forward, _silu_backward, _swiglu_forward,
                                       _swiglu_backward)}


def _pick(parallel_kernel, size: int):
    return parallel_kernel if size >= PARALLEL_MIN_SIZE else _SERIAL[parallel_kernel]


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


def swiglu_forward(gate: np.ndarray, up: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """silu(gate)·up, elementwise over two arrays of one shape.

    >>> swiglu_forward(np.array([1.0]), np.array([2.0]))
    array([1.46211716])
    """
    op = "swiglu_forward"
    gate = float_array(op, "gate", gate)
    up = float_array(op, "up", up, gate.dtype)
    same_shape(op, "up", up, gate.shape)
    out = output(op, out, gate.shape, gate.dtype)
    _pick(_swiglu_forward, gate.size)(gate.reshape(-1), up.reshape(-1), out.reshape(-1))
    return out


def swiglu_backward(gate: np.ndarray, up: np.ndarray, dout: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(dgate, dup)`` of ``swiglu_forward`` given the upstream gradient ``dout``."""
    op = "swiglu_backward"
    gate = float_array(op, "gate", gate)
    up = float_array(op, "up", up, gate.dtype)
    dout = float_array(op, "dout", dout, gate.dtype)
    same_shape(op, "up", up, gate.shape)
    same_shape(op, "dout", dout, gate.shape)
    dgate, dup = np.empty_like(gate), np.empty_like(gate)
    _pick(_swiglu_backward, gate.size)(gate.reshape(-1), up.reshape(-1), dout.reshape(-1),
                                       dgate.reshape(-1), dup.reshape(-1))
    return dgate, dup

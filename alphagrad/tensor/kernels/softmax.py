"""Softmax over the last axis, numerically stable: the row max is subtracted; -inf gives 0."""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output, rows, same_shape
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._maxnum import maxnum
from alphagrad.tensor.kernels._serial import PARALLEL_MIN_SIZE, serial_twin, use_parallel


@kernel(parallel=True)
def _softmax_forward(x, out):
    # x, out: (R, C); three passes over a row that stays in L1/L2: max, exp and sum, scale
    R, C = x.shape
    for i in prange(R):
        row_max = x.dtype.type(-np.inf)
        for j in range(C):
            row_max = maxnum(row_max, x[i, j])
        total = x.dtype.type(0.0)
        for j in range(C):
            e = fast_exp(x[i, j] - row_max)
            out[i, j] = e
            total += e
        inv = x.dtype.type(1.0) / total
        for j in range(C):
            out[i, j] *= inv


@kernel(parallel=True)
def _softmax_backward(out, dout, dx):
    # out, dout, dx: (R, C); dx = out * (dout - sum(dout * out))
    R, C = out.shape
    for i in prange(R):
        dot = out.dtype.type(0.0)
        for j in range(C):
            dot += dout[i, j] * out[i, j]
        for j in range(C):
            dx[i, j] = out[i, j] * (dout[i, j] - dot)


_softmax_forward_serial = serial_twin(_softmax_forward)
_softmax_backward_serial = serial_twin(_softmax_backward)


def softmax_forward(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Softmax of ``x`` over its last axis.

    >>> softmax_forward(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    x = float_array("softmax_forward", "x", x)
    x2 = rows("softmax_forward", "x", x)
    out = output("softmax_forward", out, x.shape, x.dtype)
    run = _softmax_forward if use_parallel(x.size, PARALLEL_MIN_SIZE) else _softmax_forward_serial
    run(x2, out.reshape(x2.shape))
    return out


def softmax_backward(
    out: np.ndarray, dout: np.ndarray, dx: np.ndarray | None = None
) -> np.ndarray:
    """Gradient of the softmax input, from the forward's ``out`` and the upstream ``dout``."""
    out = float_array("softmax_backward", "out", out)
    dout = float_array("softmax_backward", "dout", dout, out.dtype)
    same_shape("softmax_backward", "dout", dout, out.shape)
    out2 = rows("softmax_backward", "out", out)
    dx = output("softmax_backward", dx, out.shape, out.dtype)
    run = _softmax_backward if use_parallel(out.size, PARALLEL_MIN_SIZE) else \
        _softmax_backward_serial
    run(out2, dout.reshape(out2.shape), dx.reshape(out2.shape))
    return dx

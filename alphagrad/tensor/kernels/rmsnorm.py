"""RMS normalisation over the last axis (Llama's norm): the forward saves rstd per row."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, rows, same_shape
from alphagrad.tensor.kernels._serial import PARALLEL_MIN_SIZE, serial_twin, use_parallel
from alphagrad.tensor.threads import get_num_threads


@kernel(parallel=True)
def _rmsnorm_forward(x, weight, eps, out, rstd):
    # x, out: (R, C); weight: (C,) or None; saves rstd: (R,) = 1 / sqrt(mean(x²) + eps)
    R, C = x.shape
    inv_c = x.dtype.type(1.0 / C)  # dividing by the int C would promote float32 to float64
    for i in prange(R):
        s2 = x.dtype.type(0.0)
        for j in range(C):
            s2 += x[i, j] * x[i, j]
        s = x.dtype.type(1.0) / math.sqrt(s2 * inv_c + eps)
        for j in range(C):
            y = x[i, j] * s
            if weight is not None:
                y *= weight[j]
            out[i, j] = y
        rstd[i] = s


@kernel(parallel=True)
def _rmsnorm_backward(dout, x, weight, rstd, P, dx, dweight_parts):
    # dout, x, dx: (R, C); weight: (C,) or None; rstd: (R,). Chunk p of the rows sums its
    # dweight into row p of dweight_parts: (P, C) (None when weight is), so no two threads add
    # into one element.
    R, C = x.shape
    inv_c = x.dtype.type(1.0 / C)
    for p in prange(P):
        for i in range(p * R // P, (p + 1) * R // P):
            s = rstd[i]
            # dx = rstd * (g - xhat * mean(g * xhat)) with g = weight * dout, xhat = x * rstd
            gx_mean = x.dtype.type(0.0)
            for j in range(C):
                g = dout[i, j] * weight[j] if weight is not None else dout[i, j]
                gx_mean += g * x[i, j]
            gx_mean *= inv_c * s
            for j in range(C):
                xhat = x[i, j] * s
                g = dout[i, j] * weight[j] if weight is not None else dout[i, j]
                dx[i, j] = (g - xhat * gx_mean) * s
                if weight is not None:
                    dweight_parts[p, j] += dout[i, j] * xhat


_rmsnorm_forward_serial = serial_twin(_rmsnorm_forward)
_rmsnorm_backward_serial = serial_twin(_rmsnorm_backward)


def rmsnorm_forward(x: np.ndarray, weight: np.ndarray | None,
                    eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """``x / sqrt(mean(x²) + eps) · weight`` over the last axis C; ``weight`` is (C,) or None.

    Returns ``(out, rstd)``; rstd has shape ``x.shape[:-1]`` and is what ``rmsnorm_backward``
    needs.

    >>> out, rstd = rmsnorm_forward(np.array([[3.0, -4.0]]), None, eps=0.0)
    >>> out.round(4), rstd.round(4)
    (array([[ 0.8485, -1.1314]]), array([0.2828]))
    """
    op = "rmsnorm_forward"
    x = float_array(op, "x", x)
    x2 = rows(op, "x", x)
    weight = _per_channel(op, weight, x)
    out = np.empty_like(x)
    rstd = np.empty(x.shape[:-1], x.dtype)
    run = _rmsnorm_forward if use_parallel(x.size, PARALLEL_MIN_SIZE) else _rmsnorm_forward_serial
    run(x2, weight, x.dtype.type(eps), out.reshape(x2.shape), rstd.reshape(-1))
    return out, rstd


def rmsnorm_backward(dout: np.ndarray, x: np.ndarray, weight: np.ndarray | None,
                     rstd: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Gradients ``(dx, dweight)`` of ``rmsnorm_forward`` from its saved rstd (dweight is None
    when ``weight`` is)."""
    op = "rmsnorm_backward"
    x = float_array(op, "x", x)
    x2 = rows(op, "x", x)
    dout = float_array(op, "dout", dout, x.dtype)
    same_shape(op, "dout", dout, x.shape)
    weight = _per_channel(op, weight, x)
    rstd = float_array(op, "rstd", rstd, x.dtype)
    same_shape(op, "rstd", rstd, x.shape[:-1])
    parallel = use_parallel(x.size, PARALLEL_MIN_SIZE)
    parts = max(1, min(x2.shape[0], get_num_threads())) if parallel else 1
    dweight_parts = np.zeros((parts, x2.shape[1]), x.dtype) if weight is not None else None
    dx = np.empty_like(x)
    (_rmsnorm_backward if parallel else _rmsnorm_backward_serial)(
        dout.reshape(x2.shape), x2, weight, rstd.reshape(-1), parts, dx.reshape(x2.shape),
        dweight_parts,
    )
    return dx, dweight_parts.sum(axis=0) if weight is not None else None


def _per_channel(op: str, a, x: np.ndarray) -> np.ndarray | None:
    if a is None:
        return None
    a = float_array(op, "weight", a, x.dtype)
    same_shape(op, "weight", a, x.shape[-1:])
    return a

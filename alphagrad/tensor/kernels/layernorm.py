"""Layer normalisation over the last axis, llm.c style: the forward saves mean and rstd per row."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, rows, same_shape
from alphagrad.tensor.kernels._serial import PARALLEL_MIN_SIZE, serial_twin, use_parallel
from alphagrad.tensor.threads import get_num_threads


@kernel(parallel=True)
def _layernorm_forward(x, weight, bias, eps, out, mean, rstd):
    # x, out: (R, C); weight, bias: (C,) or None; saves mean, rstd: (R,). Mean and variance come
    # from one pass over the row shifted by its first element (shifting keeps E[d²] − E[d]²
    # accurate: the shift is within a few standard deviations of the mean), then one pass writes.
    R, C = x.shape
    inv_c = x.dtype.type(1.0 / C)  # dividing by the int C would promote float32 to float64
    for i in prange(R):
        shift = x[i, 0]
        s1 = x.dtype.type(0.0)
        s2 = x.dtype.type(0.0)
        for j in range(C):
            d = x[i, j] - shift
            s1 += d
            s2 += d * d
        d_mean = s1 * inv_c
        m = shift + d_mean
        var = max(s2 * inv_c - d_mean * d_mean, x.dtype.type(0.0))
        s = x.dtype.type(1.0) / math.sqrt(var + eps)
        for j in range(C):
            y = (x[i, j] - m) * s
            if weight is not None:
                y *= weight[j]
            if bias is not None:
                y += bias[j]
            out[i, j] = y
        mean[i] = m
        rstd[i] = s


@kernel(parallel=True)
def _layernorm_backward(dout, x, weight, mean, rstd, P, dx, dweight_parts, dbias_parts):
    # dout, x, dx: (R, C); weight: (C,) or None; mean, rstd: (R,). The rows are split in P chunks
    # and chunk p sums its dweight, dbias into row p of dweight_parts, dbias_parts: (P, C), so no
    # two threads add into one element. Both are None when weight is.
    R, C = x.shape
    inv_c = x.dtype.type(1.0 / C)
    for p in prange(P):
        for i in range(p * R // P, (p + 1) * R // P):
            m, s = mean[i], rstd[i]
            # dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = weight * dout
            g_mean = x.dtype.type(0.0)
            gx_mean = x.dtype.type(0.0)
            for j in range(C):
                g = dout[i, j] * weight[j] if weight is not None else dout[i, j]
                g_mean += g
                gx_mean += g * (x[i, j] - m) * s
            g_mean *= inv_c
            gx_mean *= inv_c
            for j in range(C):
                xhat = (x[i, j] - m) * s
                g = dout[i, j] * weight[j] if weight is not None else dout[i, j]
                dx[i, j] = (g - g_mean - xhat * gx_mean) * s
                if weight is not None:
                    dweight_parts[p, j] += dout[i, j] * xhat
                    dbias_parts[p, j] += dout[i, j]


_layernorm_forward_serial = serial_twin(_layernorm_forward)
_layernorm_backward_serial = serial_twin(_layernorm_backward)


def layernorm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float = 1e-5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise ``x`` over its last axis C, then scale by ``weight`` and shift by ``bias``.

    ``weight`` and ``bias`` are (C,) or None. Returns ``(out, mean, rstd)``; mean and rstd have
    shape ``x.shape[:-1]`` and are what ``layernorm_backward`` needs.

    >>> out, mean, rstd = layernorm_forward(np.array([[1.0, 3.0]]), None, None, eps=0.0)
    >>> out, mean, rstd
    (array([[-1.,  1.]]), array([2.]), array([1.]))
    """
    op = "layernorm_forward"
    x = float_array(op, "x", x)
    x2 = rows(op, "x", x)
    weight = _per_channel(op, "weight", weight, x)
    bias = _per_channel(op, "bias", bias, x)
    out = np.empty_like(x)
    mean = np.empty(x.shape[:-1], x.dtype)
    rstd = np.empty(x.shape[:-1], x.dtype)
    run = _layernorm_forward if use_parallel(x.size, PARALLEL_MIN_SIZE) else \
        _layernorm_forward_serial
    run(
        x2, weight, bias, x.dtype.type(eps), out.reshape(x2.shape), mean.reshape(-1),
        rstd.reshape(-1),
    )
    return out, mean, rstd


def layernorm_backward(
    dout: np.ndarray, x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray,
    rstd: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dweight, dbias)`` of ``layernorm_forward``, from its saved mean and rstd.

    dweight and dbias are None when ``weight`` is None; otherwise both are computed (the caller
    drops dbias if the layer has no bias).
    """
    op = "layernorm_backward"
    x = float_array(op, "x", x)
    x2 = rows(op, "x", x)
    dout = float_array(op, "dout", dout, x.dtype)
    same_shape(op, "dout", dout, x.shape)
    weight = _per_channel(op, "weight", weight, x)
    mean = float_array(op, "mean", mean, x.dtype)
    rstd = float_array(op, "rstd", rstd, x.dtype)
    same_shape(op, "mean", mean, x.shape[:-1])
    same_shape(op, "rstd", rstd, x.shape[:-1])
    # One chunk of rows per thread: every thread is busy and the partial sums stay few.
    parallel = use_parallel(x.size, PARALLEL_MIN_SIZE)
    parts = max(1, min(x2.shape[0], get_num_threads())) if parallel else 1
    dweight_parts = dbias_parts = None
    if weight is not None:
        dweight_parts = np.zeros((parts, x2.shape[1]), x.dtype)
        dbias_parts = np.zeros((parts, x2.shape[1]), x.dtype)
    dx = np.empty_like(x)
    (_layernorm_backward if parallel else _layernorm_backward_serial)(
        dout.reshape(x2.shape), x2, weight, mean.reshape(-1), rstd.reshape(-1), parts,
        dx.reshape(x2.shape), dweight_parts, dbias_parts,
    )
    if weight is None:
        return dx, None, None
    return dx, dweight_parts.sum(axis=0), dbias_parts.sum(axis=0)


def _per_channel(op: str, name: str, a, x: np.ndarray) -> np.ndarray | None:
    if a is None:
        return None
    a = float_array(op, name, a, x.dtype)
    same_shape(op, name, a, x.shape[-1:])
    return a

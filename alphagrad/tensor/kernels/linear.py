"""``x @ weight.T + bias`` for the few rows of a decoding step.

A decoding step multiplies 1 to 16 rows by each weight. OpenBLAS's GEMM first packs the whole
(out, in) weight into its own layout, which for so few rows costs more than the product: 8 rows
against the 1152 x 384 and 1536 x 384 weights of a 384-wide GPT took 3x the time of one row
(measured over a layer stack too large for the caches). Here each weight row is read once,
straight from the (out, in) layout the model stores, and dotted with the rows of ``x``, which
stay in L1; the cost is then the one pass over the weight that a single row needs, plus the
arithmetic. Blocks of two weight rows by two rows of x halve the loads per multiply-add (8 rows
ran 10% faster than one weight row by two of x).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

MAX_ROWS = 16  # from 32 rows on, BLAS's packed GEMM is as fast (measured at GPT widths)

# A second thread pays once each streams a weight of >= 256k elements (1 MB in float32).
PARALLEL_MIN_SIZE = 1 << 18


@kernel()
def _dot_rows(x, w, b, out, j, first):
    # out[m, j] = x[m] @ w + b for the rows m >= first of x (M, K), one weight row w (K,)
    for m in range(first, x.shape[0]):
        xm = x[m]
        a = x.dtype.type(0.0)
        for k in range(x.shape[1]):
            a += xm[k] * w[k]
        out[m, j] = a + b


@kernel(parallel=True)
def _linear_rows(x, weight, bias, out):
    # x (M, K), weight (N, K), bias (N,) or (0,), out (M, N). Two weight rows against two rows
    # of x at a time: each element loaded from L1 serves two multiply-adds.
    M, K = x.shape
    N = weight.shape[0]
    zero = x.dtype.type(0.0)
    paired = M - M % 2
    for p in prange(N // 2):
        j = 2 * p
        w0, w1 = weight[j], weight[j + 1]
        b0 = bias[j] if bias.size else zero
        b1 = bias[j + 1] if bias.size else zero
        for m in range(0, paired, 2):
            x0, x1 = x[m], x[m + 1]
            a00 = zero
            a01 = zero
            a10 = zero
            a11 = zero
            for k in range(K):
                a00 += x0[k] * w0[k]
                a01 += x0[k] * w1[k]
                a10 += x1[k] * w0[k]
                a11 += x1[k] * w1[k]
            out[m, j] = a00 + b0
            out[m, j + 1] = a01 + b1
            out[m + 1, j] = a10 + b0
            out[m + 1, j + 1] = a11 + b1
        if paired < M:
            _dot_rows(x, w0, b0, out, j, paired)
            _dot_rows(x, w1, b1, out, j + 1, paired)
    if N % 2:
        _dot_rows(x, weight[N - 1], bias[N - 1] if bias.size else zero, out, N - 1, 0)


_linear_rows_serial = serial_twin(_linear_rows)


def linear_rows(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
    """``x @ weight.T + bias`` for x (M, K) with M <= ``MAX_ROWS``, weight (N, K), bias (N,).

    >>> linear_rows(np.ones((1, 2), np.float32), np.eye(2, dtype=np.float32))
    array([[1., 1.]], dtype=float32)
    """
    op = "linear_rows"
    x = float_array(op, "x", x)
    weight = float_array(op, "weight", weight, x.dtype)
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: x {x.shape} and weight {weight.shape} must be (M, K) and (N, K)")
    if not 1 <= x.shape[0] <= MAX_ROWS:
        raise ValueError(f"{op}: x has {x.shape[0]} rows; this kernel takes 1 to {MAX_ROWS}")
    if bias is None:
        bias = np.empty(0, x.dtype)
    else:
        bias = float_array(op, "bias", bias, x.dtype)
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"{op}: bias has shape {bias.shape}, expected {weight.shape[:1]}")
    out = output(op, out, (x.shape[0], weight.shape[0]), x.dtype)
    parallel = use_parallel(weight.size, PARALLEL_MIN_SIZE)
    (_linear_rows if parallel else _linear_rows_serial)(x, weight, bias, out)
    return out

"""``x @ weight.T + bias`` for the few rows of a decoding step.

A decoding step multiplies 1 to 16 rows by each weight. OpenBLAS's GEMM first packs the whole
(out, in) weight into its own layout, which for so few rows costs more than the product: 8 rows
against the 1152 x 384 and 1536 x 384 weights of a 384-wide GPT took 3x the time of one row
(measured over a layer stack too large for the caches). Here each weight row is read once,
straight from the (out, in) layout the model stores, and dotted with the rows of ``x``, which
stay in L1; the cost is then the one pass over the weight that a single row needs, plus the
arithmetic. Blocks of four weight rows by four rows of x load one element per four
multiply-adds. A block's weight rows arrive from memory during its first pass and the later
passes run from L1, so the memory would idle while they compute, with the hardware prefetchers
waiting on the next demand miss: each pass prefetches a share of the block two ahead. Over
char-medium's layer stack (42 MB) 8 rows ran 10-23% faster than blocks of two by two without
the prefetch, 16 rows 30-39%; the larger blocks alone were slower there.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, output
from alphagrad.tensor.kernels._prefetch import prefetch_range
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

MAX_ROWS = 16  # from 32 rows on, BLAS's packed GEMM is as fast (measured at GPT widths)

# A second thread pays once the weight has >= 64k elements (measured, one row: 256 x 256 1.1x
# faster on two threads, 128 x 128 0.9x).
PARALLEL_MIN_SIZE = 1 << 16

# Weight rows between the block being computed and the one being prefetched (two blocks).
PREFETCH_AHEAD = 8


@kernel()
def _dot_rows(x, w, b, out, j, first):
    # out[m, j] = x[m] @ w + b for the rows m >= first of x (M, K), one weight row w (K,)
    for m in range(first, x.shape[0]):
        xm = x[m]
        a = x.dtype.type(0.0)
        for k in range(x.shape[1]):
            a += xm[k] * w[k]
        out[m, j] = a + b


@kernel()
def _store4(row, j, a0, a1, a2, a3):
    # row[j:j + 4] = a0..a3; a tuple stored into a slice compiles to a shape check and a call
    row[j] = a0
    row[j + 1] = a1
    row[j + 2] = a2
    row[j + 3] = a3


@kernel(parallel=True)
def _linear_rows(x, weight, bias, out):
    # x (M, K), weight (N, K), bias (N,) or (0,), out (M, N). Blocks of four weight rows by four
    # rows of x: each element loaded from L1 serves four multiply-adds. Rows of x past a multiple
    # of four take one weight row at a time. While x's blocks pass over four weight rows, the
    # rows ``PREFETCH_AHEAD`` further on are prefetched, a share per pass.
    M, K = x.shape
    N = weight.shape[0]
    zero = x.dtype.type(0.0)
    blocked = M - M % 4
    passes = max(blocked // 4, 1)
    share = (4 * K + passes - 1) // passes  # elements prefetched per pass
    flat = weight.reshape(N * K)
    for p in prange(N // 4):
        j = 4 * p
        w0, w1, w2, w3 = weight[j], weight[j + 1], weight[j + 2], weight[j + 3]
        b0 = bias[j] if bias.size else zero
        b1 = bias[j + 1] if bias.size else zero
        b2 = bias[j + 2] if bias.size else zero
        b3 = bias[j + 3] if bias.size else zero
        for m in range(0, blocked, 4):
            first = (j + PREFETCH_AHEAD) * K + m // 4 * share
            prefetch_range(flat, first, first + share)
            x0, x1, x2, x3 = x[m], x[m + 1], x[m + 2], x[m + 3]
            a00 = a01 = a02 = a03 = zero
            a10 = a11 = a12 = a13 = zero
            a20 = a21 = a22 = a23 = zero
            a30 = a31 = a32 = a33 = zero
            for k in range(K):
                u0, u1, u2, u3 = w0[k], w1[k], w2[k], w3[k]
                v = x0[k]
                a00 += v * u0
                a01 += v * u1
                a02 += v * u2
                a03 += v * u3
                v = x1[k]
                a10 += v * u0
                a11 += v * u1
                a12 += v * u2
                a13 += v * u3
                v = x2[k]
                a20 += v * u0
                a21 += v * u1
                a22 += v * u2
                a23 += v * u3
                v = x3[k]
                a30 += v * u0
                a31 += v * u1
                a32 += v * u2
                a33 += v * u3
            _store4(out[m], j, a00 + b0, a01 + b1, a02 + b2, a03 + b3)
            _store4(out[m + 1], j, a10 + b0, a11 + b1, a12 + b2, a13 + b3)
            _store4(out[m + 2], j, a20 + b0, a21 + b1, a22 + b2, a23 + b3)
            _store4(out[m + 3], j, a30 + b0, a31 + b1, a32 + b2, a33 + b3)
        _dot_rows(x, w0, b0, out, j, blocked)
        _dot_rows(x, w1, b1, out, j + 1, blocked)
        _dot_rows(x, w2, b2, out, j + 2, blocked)
        _dot_rows(x, w3, b3, out, j + 3, blocked)
    for j in range(N - N % 4, N):
        _dot_rows(x, weight[j], bias[j] if bias.size else zero, out, j, 0)


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

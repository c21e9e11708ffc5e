"""Embedding lookup (a row gather) and its backward (a scatter-add of rows into the table)."""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, index_array, output
from alphagrad.tensor.kernels._serial import PARALLEL_MIN_SIZE, serial_twin, use_parallel
from alphagrad.tensor.threads import get_num_threads


@kernel(parallel=True)
def _embedding_forward(weight, idx, out):
    # weight: (V, C); idx: (N,); out: (N, C)
    N, C = out.shape
    for n in prange(N):
        row = idx[n]
        for c in range(C):
            out[n, c] = weight[row, c]


@kernel(parallel=True)
def _embedding_backward(dout, idx, blocks, dweight):
    # dout: (N, C); idx: (N,); dweight: (V, C), zeroed. Repeated ids add into the same row, so
    # threads split the columns instead: block b owns columns [b*C//blocks, (b+1)*C//blocks).
    N, C = dout.shape
    for b in prange(blocks):
        c0, c1 = b * C // blocks, (b + 1) * C // blocks
        for n in range(N):
            row = idx[n]
            for c in range(c0, c1):
                dweight[row, c] += dout[n, c]


_embedding_forward_serial = serial_twin(_embedding_forward)
_embedding_backward_serial = serial_twin(_embedding_backward)


def embedding_forward(
    weight: np.ndarray, idx: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Rows of ``weight`` (V, C) picked by the ids ``idx`` (any shape): ``idx.shape + (C,)``.

    >>> embedding_forward(np.eye(3), np.array([2, 0]))
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    op = "embedding_forward"
    weight = float_array(op, "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must have shape (V, C), got {weight.shape}")
    idx = _ids(op, idx, weight.shape[0])
    out = output(op, out, idx.shape + weight.shape[1:], weight.dtype)
    run = _embedding_forward if use_parallel(out.size, PARALLEL_MIN_SIZE) else \
        _embedding_forward_serial
    run(weight, idx.reshape(-1), out.reshape(idx.size, weight.shape[1]))
    return out


def embedding_backward(
    dout: np.ndarray, idx: np.ndarray, num_embeddings: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Gradient (V, C) of the table: row v is the sum of ``dout`` over every place id v was used.

    ``dout`` has shape ``idx.shape + (C,)`` and V is ``num_embeddings``.
    """
    op = "embedding_backward"
    if not isinstance(num_embeddings, (int, np.integer)) or num_embeddings < 1:
        raise ValueError(f"{op}: num_embeddings must be a positive int, got {num_embeddings!r}")
    dout = float_array(op, "dout", dout)
    idx = _ids(op, idx, num_embeddings)
    if dout.ndim == 0 or dout.shape[:-1] != idx.shape:
        raise ValueError(f"{op}: dout has shape {dout.shape}, expected {idx.shape} + (C,)")
    C = dout.shape[-1]
    if out is None:  # calloc'd: pages of rows no id touches are never even written
        dweight = np.zeros((num_embeddings, C), dout.dtype)
    else:
        dweight = output(op, out, (num_embeddings, C), dout.dtype)
        dweight.fill(0)
    # One column block per thread; never fewer than 16 columns, so rows stay vector-wide.
    blocks = max(1, min(get_num_threads(), C // 16))
    run = _embedding_backward if use_parallel(dout.size, PARALLEL_MIN_SIZE) else \
        _embedding_backward_serial
    run(dout.reshape(idx.size, C), idx.reshape(-1), blocks, dweight)
    return dweight


def _ids(op: str, idx, V: int) -> np.ndarray:
    idx = index_array(op, "idx", idx)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{op}: id {bad} is out of range for an embedding of V={V} rows")
    return idx

"""Fused causal self-attention: flash-style forward and backward kernels.

No (T, T) matrix is ever stored. The forward walks each block of query rows across the key
blocks it may see with an online softmax and keeps only the row log-sum-exp; the backward
recomputes the probabilities from q, k and that log-sum-exp.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.dtypes import FLOAT_DTYPES

# query rows and keys per tile: a tile's k, v and scores stay in L1
BLOCK_Q = 32
BLOCK_K = 64


@kernel(parallel=True)
def _attention_forward(q, k, v, scale, out, lse, block_q, block_k):
    # q (B, NH, Tq, hs), k, v (B, NH, Tk, hs) -> out (B, NH, Tq, hs), lse (B, NH, Tq).
    # Query row i sees keys j <= i + Tk - Tq. One task = one block of query rows of one head.
    B, NH, Tq, hs = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq
    n_qblocks = (Tq + block_q - 1) // block_q
    for task in prange(B * NH * n_qblocks):
        b = task // (NH * n_qblocks)
        h = task // n_qblocks % NH
        i0 = task % n_qblocks * block_q
        nq = min(block_q, Tq - i0)
        zero = q.dtype.type(0)
        qs = np.empty((nq, hs), q.dtype)  # q rows times scale
        kt = np.empty((hs, block_k), q.dtype)  # key tile, transposed so scores vectorise
        vb = np.empty((block_k, hs), q.dtype)
        s = np.empty(block_k, q.dtype)
        acc = np.zeros((nq, hs), q.dtype)
        row_max = np.full(nq, -np.inf, q.dtype)
        row_sum = np.zeros(nq, q.dtype)
        for r in range(nq):
            for d in range(hs):
                qs[r, d] = q[b, h, i0 + r, d] * scale
        n_keys = i0 + nq + offset  # keys seen by the last row of the block
        for j0 in range(0, n_keys, block_k):
            nk = min(block_k, n_keys - j0)
            for c in range(nk):
                for d in range(hs):
                    kt[d, c] = k[b, h, j0 + c, d]
                    vb[c, d] = v[b, h, j0 + c, d]
            for r in range(nq):
                lim = min(nk, i0 + r + offset + 1 - j0)  # causal: keys j0 .. j0 + lim - 1
                if lim <= 0:
                    continue
                s[:lim] = zero
                for d in range(hs):
                    qd = qs[r, d]
                    for c in range(lim):
                        s[c] += qd * kt[d, c]
                m = row_max[r]
                for c in range(lim):
                    m = max(m, s[c])
                alpha = math.exp(row_max[r] - m)
                total = zero
                for c in range(lim):
                    p = math.exp(s[c] - m)
                    s[c] = p
                    total += p
                row_max[r] = m
                row_sum[r] = row_sum[r] * alpha + total
                for d in range(hs):
                    acc[r, d] *= alpha
                for c in range(lim):
                    p = s[c]
                    for d in range(hs):
                        acc[r, d] += p * vb[c, d]
        for r in range(nq):
            inv = 1 / row_sum[r]
            for d in range(hs):
                out[b, h, i0 + r, d] = acc[r, d] * inv
            lse[b, h, i0 + r] = row_max[r] + math.log(row_sum[r])


@kernel(parallel=True)
def _attention_backward(dout, q, k, v, out, lse, scale, dq, dk, dv, block_q, block_k):
    # dout, out (B, NH, Tq, hs), q (B, NH, Tq, hs), k, v (B, NH, Tk, hs), lse (B, NH, Tq)
    # -> dq (B, NH, Tq, hs), dk, dv (B, NH, Tk, hs). One task = one head, which owns its dk, dv.
    B, NH, Tq, hs = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq
    for task in prange(B * NH):
        b = task // NH
        h = task % NH
        zero = q.dtype.type(0)
        dk_acc = np.zeros((Tk, hs), q.dtype)
        dv_acc = np.zeros((Tk, hs), q.dtype)
        qb = np.empty((block_q, hs), q.dtype)
        qs = np.empty((block_q, hs), q.dtype)
        gb = np.empty((block_q, hs), q.dtype)  # dout rows
        dq_acc = np.empty((block_q, hs), q.dtype)
        delta = np.empty(block_q, q.dtype)  # rowsum(dout * out) = rowsum(dP * P)
        kt = np.empty((hs, block_k), q.dtype)
        vt = np.empty((hs, block_k), q.dtype)
        kb = np.empty((block_k, hs), q.dtype)
        p = np.empty(block_k, q.dtype)
        ds = np.empty(block_k, q.dtype)
        for i0 in range(0, Tq, block_q):
            nq = min(block_q, Tq - i0)
            for r in range(nq):
                total = zero
                for d in range(hs):
                    qb[r, d] = q[b, h, i0 + r, d]
                    qs[r, d] = qb[r, d] * scale
                    gb[r, d] = dout[b, h, i0 + r, d]
                    dq_acc[r, d] = zero
                    total += gb[r, d] * out[b, h, i0 + r, d]
                delta[r] = total
            n_keys = i0 + nq + offset
            for j0 in range(0, n_keys, block_k):
                nk = min(block_k, n_keys - j0)
                for c in range(nk):
                    for d in range(hs):
                        kb[c, d] = k[b, h, j0 + c, d]
                        kt[d, c] = kb[c, d]
                        vt[d, c] = v[b, h, j0 + c, d]
                for r in range(nq):
                    lim = min(nk, i0 + r + offset + 1 - j0)
                    if lim <= 0:
                        continue
                    p[:lim] = zero
                    ds[:lim] = zero
                    for d in range(hs):
                        qd = qs[r, d]
                        gd = gb[r, d]
                        for c in range(lim):
                            p[c] += qd * kt[d, c]
                            ds[c] += gd * vt[d, c]
                    m = lse[b, h, i0 + r]
                    dr = delta[r]
                    for c in range(lim):
                        p[c] = math.exp(p[c] - m)
                        ds[c] = p[c] * (ds[c] - dr)
                    for c in range(lim):
                        pc = p[c]
                        dc = ds[c]
                        for d in range(hs):
                            dv_acc[j0 + c, d] += pc * gb[r, d]
                            dk_acc[j0 + c, d] += dc * qb[r, d]
                            dq_acc[r, d] += dc * kb[c, d]
            for r in range(nq):
                for d in range(hs):
                    dq[b, h, i0 + r, d] = dq_acc[r, d] * scale
        for j in range(Tk):
            for d in range(hs):
                dk[b, h, j, d] = dk_acc[j, d] * scale
                dv[b, h, j, d] = dv_acc[j, d]


def _check_float_dtype(name: str, arrays: dict) -> np.dtype:
    dtype = next(iter(arrays.values())).dtype
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64 arrays, got {dtype}")
    for key, a in arrays.items():
        if a.dtype != dtype:
            first = next(iter(arrays))
            raise TypeError(f"{name}: {key} is {a.dtype} but {first} is {dtype}; use one dtype")
    return dtype


def _check_shapes(name: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"{name}: q, k, v must be 4-d (B, NH, T, hs), "
                         f"got shapes {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or k.shape[:2] + k.shape[3:] != q.shape[:2] + q.shape[3:]:
        raise ValueError(f"{name}: q {q.shape}, k {k.shape}, v {v.shape} do not agree on "
                         "(B, NH, *, hs), or k and v differ")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"{name}: q has {q.shape[2]} rows but k only {k.shape[2]}; need Tq <= Tk")


def _check_out(name: str, key: str, a: np.ndarray, shape: tuple, dtype: np.dtype) -> None:
    if a.shape != shape or a.dtype != dtype:
        raise ValueError(f"{name}: {key} must be {dtype} of shape {shape}, got {a.dtype} {a.shape}")


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                      out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Causal softmax(q kᵀ · scale) v, and the row log-sum-exp the backward needs.

    q is (B, NH, Tq, hs), k and v (B, NH, Tk, hs) with Tq <= Tk: query row i sees keys
    j <= i + Tk - Tq (so a KV cache works). Views are read in place. The result is a
    (B, NH, Tq, hs) view of a (B, Tq, NH, hs) buffer, so merging heads costs nothing.

    >>> q = np.ones((1, 1, 2, 4), np.float32)
    >>> out, lse = attention_forward(q, q, np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4), 0.5)
    >>> out[0, 0, 1]
    array([2., 3., 4., 5.], dtype=float32)
    """
    name = "attention_forward"
    _check_shapes(name, q, k, v)
    dtype = _check_float_dtype(name, {"q": q, "k": k, "v": v})
    B, NH, Tq, hs = q.shape
    if out is None:
        out = np.empty((B, Tq, NH, hs), dtype).transpose(0, 2, 1, 3)
    else:
        _check_out(name, "out", out, q.shape, dtype)
    lse = np.empty((B, NH, Tq), dtype)
    _attention_forward(q, k, v, dtype.type(scale), out, lse, BLOCK_Q, BLOCK_K)
    return out, lse


def attention_backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                       out: np.ndarray, lse: np.ndarray, scale: float,
                       dq: np.ndarray | None = None, dk: np.ndarray | None = None,
                       dv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dq, dk, dv) of ``attention_forward`` given dout, its out and its lse.

    dq, dk, dv may be preallocated arrays (or views, such as slices of one qkv-shaped
    buffer) to write into; otherwise they are allocated.
    """
    name = "attention_backward"
    _check_shapes(name, q, k, v)
    dtype = _check_float_dtype(name, {"q": q, "k": k, "v": v, "dout": dout, "out": out,
                                      "lse": lse})
    for key, a in (("dout", dout), ("out", out)):
        _check_out(name, key, a, q.shape, dtype)
    _check_out(name, "lse", lse, q.shape[:3], dtype)
    grads = []
    for key, grad, like in (("dq", dq, q), ("dk", dk, k), ("dv", dv, v)):
        if grad is None:
            grad = np.empty(like.shape, dtype)
        else:
            _check_out(name, key, grad, like.shape, dtype)
        grads.append(grad)
    dq, dk, dv = grads
    _attention_backward(dout, q, k, v, out, lse, dtype.type(scale), dq, dk, dv, BLOCK_Q, BLOCK_K)
    return dq, dk, dv

"""Fused causal self-attention: flash-style forward and backward kernels.

No (T, T) matrix is ever stored. The forward walks each block of query rows across the key
blocks it may see with an online softmax and keeps only the row log-sum-exp; the backward
recomputes the probabilities from q, k and that log-sum-exp.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.dtypes import FLOAT_DTYPES
from alphagrad.tensor.kernels._exp import fast_exp

# query rows and keys per tile; every inner loop runs along one of these, so they are multiples
# of the SIMD width (64 float32 = four AVX-512 registers)
BLOCK_Q = 64
BLOCK_K = 64


@kernel()
def _matmul_add(acc, a, b, nx, ny, nz):
    # acc[:nx, :ny] += a[:nx, :nz] @ b[:nz, :ny], vectorised along y. A 4 x 4 block of a sits in
    # scalars, so one pass over y loads four rows of b and updates four rows of acc with four
    # multiply-adds each: twice the speed of the plain triple loop.
    x4, z4 = nx - nx % 4, nz - nz % 4
    for x in range(0, x4, 4):
        for z in range(0, z4, 4):
            a00, a01, a02, a03 = a[x, z], a[x, z + 1], a[x, z + 2], a[x, z + 3]
            a10, a11, a12, a13 = a[x + 1, z], a[x + 1, z + 1], a[x + 1, z + 2], a[x + 1, z + 3]
            a20, a21, a22, a23 = a[x + 2, z], a[x + 2, z + 1], a[x + 2, z + 2], a[x + 2, z + 3]
            a30, a31, a32, a33 = a[x + 3, z], a[x + 3, z + 1], a[x + 3, z + 2], a[x + 3, z + 3]
            for y in range(ny):
                b0, b1, b2, b3 = b[z, y], b[z + 1, y], b[z + 2, y], b[z + 3, y]
                acc[x, y] += a00 * b0 + a01 * b1 + a02 * b2 + a03 * b3
                acc[x + 1, y] += a10 * b0 + a11 * b1 + a12 * b2 + a13 * b3
                acc[x + 2, y] += a20 * b0 + a21 * b1 + a22 * b2 + a23 * b3
                acc[x + 3, y] += a30 * b0 + a31 * b1 + a32 * b2 + a33 * b3
        for z in range(z4, nz):
            a0, a1, a2, a3 = a[x, z], a[x + 1, z], a[x + 2, z], a[x + 3, z]
            for y in range(ny):
                bz = b[z, y]
                acc[x, y] += a0 * bz
                acc[x + 1, y] += a1 * bz
                acc[x + 2, y] += a2 * bz
                acc[x + 3, y] += a3 * bz
    for x in range(x4, nx):
        for z in range(nz):
            az = a[x, z]
            for y in range(ny):
                acc[x, y] += az * b[z, y]


@kernel()
def _mask_future(st, j0, nk, i0, nq, offset):
    # st (block_k, block_q): scores of keys j0.. against query rows i0..; row i sees j <= i + offset
    for c in range(nk):
        for r in range(min(nq, max(0, j0 + c - offset - i0))):
            st[c, r] = -np.inf


@kernel(parallel=True)
def _attention_forward(q, k, v, scale, out, lse, block_q, block_k):
    # q (B, NH, Tq, hs), k, v (B, NH, Tk, hs) -> out (B, NH, Tq, hs), lse (B, NH, Tq).
    # One task = one block of query rows of one head. Tiles are stored transposed, (hs or keys,
    # query rows), so every inner loop runs along the query rows.
    B, NH, Tq, hs = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq
    n_qblocks = (Tq + block_q - 1) // block_q
    for task in prange(B * NH * n_qblocks):
        b = task // (NH * n_qblocks)
        h = task // n_qblocks % NH
        i0 = task % n_qblocks * block_q
        nq = min(block_q, Tq - i0)
        qt = np.empty((hs, block_q), q.dtype)  # q rows times scale
        st = np.empty((block_k, block_q), q.dtype)  # scores, then probabilities
        acc = np.zeros((hs, block_q), q.dtype)
        row_max = np.full(block_q, -np.inf, q.dtype)
        new_max = np.empty(block_q, q.dtype)
        row_sum = np.zeros(block_q, q.dtype)
        for r in range(nq):
            for d in range(hs):
                qt[d, r] = q[b, h, i0 + r, d] * scale
        n_keys = i0 + nq + offset  # keys seen by the block's last row
        for j0 in range(0, n_keys, block_k):
            nk = min(block_k, n_keys - j0)
            kb = k[b, h, j0:j0 + nk]  # (nk, hs) views: only their scalars are read
            vb = v[b, h, j0:j0 + nk]
            st[:nk, :nq] = 0
            _matmul_add(st, kb, qt, nk, nq, hs)
            _mask_future(st, j0, nk, i0, nq, offset)
            new_max[:nq] = row_max[:nq]
            for c in range(nk):
                for r in range(nq):
                    new_max[r] = max(new_max[r], st[c, r])
            for c in range(nk):
                for r in range(nq):
                    st[c, r] = fast_exp(st[c, r] - new_max[r])
            for r in range(nq):
                alpha = fast_exp(row_max[r] - new_max[r])  # rescales what earlier tiles summed
                row_max[r] = new_max[r]
                row_sum[r] *= alpha
                for d in range(hs):
                    acc[d, r] *= alpha
            for c in range(nk):
                for r in range(nq):
                    row_sum[r] += st[c, r]
            _matmul_add(acc, vb.T, st, hs, nq, nk)
        for r in range(nq):
            inv = 1 / row_sum[r]
            for d in range(hs):
                out[b, h, i0 + r, d] = acc[d, r] * inv
            lse[b, h, i0 + r] = row_max[r] + np.log(row_sum[r])


@kernel(parallel=True)
def _attention_backward(dout, q, k, v, out, lse, scale, dq, dk, dv, block_q, block_k):
    # dout, out (B, NH, Tq, hs), q (B, NH, Tq, hs), k, v (B, NH, Tk, hs), lse (B, NH, Tq)
    # -> dq (B, NH, Tq, hs), dk, dv (B, NH, Tk, hs). One task = one head, which owns its dk, dv.
    # P = exp(q kᵀ·scale - lse) is recomputed tile by tile; dS = P * (dP - rowsum(dout * out)).
    B, NH, Tq, hs = q.shape
    Tk = k.shape[2]
    offset = Tk - Tq
    for task in prange(B * NH):
        b = task // NH
        h = task % NH
        n_kblocks = (Tk + block_k - 1) // block_k
        dkt = np.zeros((n_kblocks, hs, block_k), q.dtype)  # dk, transposed tile by tile
        dvt = np.zeros((n_kblocks, hs, block_k), q.dtype)
        qt = np.empty((hs, block_q), q.dtype)  # q rows times scale
        gt = np.empty((hs, block_q), q.dtype)  # dout rows, transposed
        dqt = np.empty((hs, block_q), q.dtype)
        delta = np.empty(block_q, q.dtype)  # rowsum(dout * out) = rowsum(dP * P)
        pt = np.empty((block_k, block_q), q.dtype)  # P, transposed
        dst = np.empty((block_k, block_q), q.dtype)  # dP, then dS, transposed
        p = np.empty((block_q, block_k), q.dtype)
        ds = np.empty((block_q, block_k), q.dtype)
        for i0 in range(0, Tq, block_q):
            nq = min(block_q, Tq - i0)
            for r in range(nq):
                total = q.dtype.type(0)
                for d in range(hs):
                    qt[d, r] = q[b, h, i0 + r, d] * scale
                    gt[d, r] = dout[b, h, i0 + r, d]
                    total += gt[d, r] * out[b, h, i0 + r, d]
                delta[r] = total
            dqt[:, :nq] = 0
            n_keys = i0 + nq + offset
            for j0 in range(0, n_keys, block_k):
                nk = min(block_k, n_keys - j0)
                kb = k[b, h, j0:j0 + nk]
                vb = v[b, h, j0:j0 + nk]
                pt[:nk, :nq] = 0
                _matmul_add(pt, kb, qt, nk, nq, hs)
                _mask_future(pt, j0, nk, i0, nq, offset)
                dst[:nk, :nq] = 0
                _matmul_add(dst, vb, gt, nk, nq, hs)
                for c in range(nk):
                    for r in range(nq):
                        pt[c, r] = fast_exp(pt[c, r] - lse[b, h, i0 + r])
                        dst[c, r] = pt[c, r] * (dst[c, r] - delta[r])
                for c in range(nk):
                    for r in range(nq):
                        p[r, c] = pt[c, r]
                        ds[r, c] = dst[c, r]
                _matmul_add(dqt, kb.T, dst, hs, nq, nk)
                _matmul_add(dvt[j0 // block_k], gt, p, hs, nk, nq)
                _matmul_add(dkt[j0 // block_k], qt, ds, hs, nk, nq)  # qt carries dk's scale
            for r in range(nq):
                for d in range(hs):
                    dq[b, h, i0 + r, d] = dqt[d, r] * scale
        for j in range(Tk):
            for d in range(hs):
                dk[b, h, j, d] = dkt[j // block_k, d, j % block_k]
                dv[b, h, j, d] = dvt[j // block_k, d, j % block_k]


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

"""Fused causal self-attention: flash-style forward and backward kernels.

No (T, T) matrix is ever stored. The forward walks each block of query rows across the key
blocks it may see with an online softmax and keeps only the row log-sum-exp; the backward
recomputes the probabilities from q, k and that log-sum-exp.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numpy.lib.stride_tricks import as_strided

from alphagrad._jit import kernel
from alphagrad.tensor.dtypes import FLOAT_DTYPES
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._serial import serial_twin

# query rows and keys per tile; most inner loops run along the keys, so the tile is a multiple
# of the SIMD width (64 float32 = four AVX-512 registers)
BLOCK_Q = 64
BLOCK_K = 64
# tiles on the causal diagonal are split into chunks of this many query rows
DIAGONAL_CHUNK = 16
# a block of fewer query rows than this skips the tiles (see _attend_rows_directly)
DIRECT_ROWS = 4
# below this much work (B·NH·Tq·Tk·hs) a call runs the serial twin: starting the thread pool
# costs 80-150 µs here, more than a decoding step's attention takes on one core
PARALLEL_MIN_WORK = 1 << 22


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


def _flat(*arrays: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Each array as a 1-d buffer from its first element, and their strides in bytes as one
    (n, 4) int64 array, for ``_view``.

    Numba compiles a kernel once per argument type, and a qkv slice, a transposed buffer and a
    plain array are three types; a 1-d buffer plus strides is one, so each kernel compiles once
    per dtype (each compile takes seconds). Only arrays are passed: Numba types a tuple argument
    in Python, which cost ~25 µs per (buffer, strides) pair and call.
    """
    buffers = [as_strided(a, (1 + sum((n - 1) * st for n, st in zip(a.shape, a.strides))
                              // a.itemsize,), (a.itemsize,)) for a in arrays]
    return buffers, np.array([a.strides for a in arrays], np.int64)


@kernel()
def _view(buffer, strides, B, NH, T, hs):
    # the (B, NH, T, hs) array that _flat took apart
    return as_strided(buffer, (B, NH, T, hs), (strides[0], strides[1], strides[2], strides[3]))


@kernel()
def _attend_rows_directly(q, k, v, steps, out, lse, b, h, kh, i0, nq, offset, scale):
    # The few query rows i0.. of query head (b, h), which reads key/value head kh, e.g. one row
    # when decoding with a KV cache: each
    # score is a dot product with a key row where it lies and the output sums the value rows the
    # same way, so no tile is copied or transposed. q, k, v are flat buffers whose last axis is
    # contiguous, steps[n] the (batch, head, row) strides of q, k, v in elements: indexing 1-d
    # buffers lets the loops along a row vectorise.
    hs = out.shape[3]
    k0, v0 = b * steps[1, 0] + kh * steps[1, 1], b * steps[2, 0] + kh * steps[2, 1]
    p = np.empty(i0 + nq + offset, q.dtype)
    acc = np.empty(hs, q.dtype)
    for r in range(nq):
        i = i0 + r
        q0 = b * steps[0, 0] + h * steps[0, 1] + i * steps[0, 2]
        q_row = q[q0:q0 + hs]  # slices, so the loops index from 0 and need no wraparound
        seen = i + offset + 1
        m = q.dtype.type(-np.inf)
        for c in range(seen):
            k_row = k[k0 + c * steps[1, 2]:]
            dot = q.dtype.type(0)
            for d in range(hs):
                dot += q_row[d] * k_row[d]
            p[c] = dot * scale
            m = max(m, p[c])
        total = q.dtype.type(0)
        for c in range(seen):
            p[c] = fast_exp(p[c] - m)
            total += p[c]
        acc[:] = 0
        for c in range(seen):
            v_row, weight = v[v0 + c * steps[2, 2]:], p[c]
            for d in range(hs):
                acc[d] += weight * v_row[d]
        for d in range(hs):
            out[b, h, i, d] = acc[d] / total
        lse[b, h, i] = m + np.log(total)


@kernel(parallel=True)
def _attention_forward(dims, strides, q, k, v, out, lse, scale, block_q, block_k,
                       diagonal_chunk):
    # q (B, NH, Tq, hs), k, v (B, NKV, Tk, hs) -> out (B, NH, Tq, hs), lse (B, NH, Tq); query
    # head h reads key/value head h // (NH // NKV) (grouped-query attention when NKV < NH).
    # One task = one block of query rows of one head, walked across its key tiles with an online
    # softmax. Score tiles are (query rows, keys) and each key tile is copied transposed, so the
    # scores run along the keys. Blocks of fewer than DIRECT_ROWS rows (decoding) skip the tiles.
    B, NH, NKV, Tq, Tk, hs = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    group = NH // NKV
    steps = strides[:3] // q.itemsize  # q, k, v strides in elements, for _attend_rows_directly
    flat_q, flat_k, flat_v = q, k, v
    q, out = _view(q, strides[0], B, NH, Tq, hs), _view(out, strides[3], B, NH, Tq, hs)
    k, v = _view(k, strides[1], B, NKV, Tk, hs), _view(v, strides[2], B, NKV, Tk, hs)
    offset = Tk - Tq
    n_qblocks = (Tq + block_q - 1) // block_q
    for task in prange(B * NH * n_qblocks):
        b = task // (NH * n_qblocks)
        h = task // n_qblocks % NH
        kh = h // group
        i0 = task % n_qblocks * block_q
        nq = min(block_q, Tq - i0)
        if nq < DIRECT_ROWS:
            _attend_rows_directly(flat_q, flat_k, flat_v, steps, out, lse, b, h, kh, i0, nq,
                                  offset, scale)
            continue
        qs = np.empty((block_q, hs), q.dtype)  # q rows times scale
        kt = np.empty((hs, block_k), q.dtype)
        vb = np.empty((block_k, hs), q.dtype)
        s = np.empty((block_q, block_k), q.dtype)  # scores, then probabilities
        acc = np.zeros((block_q, hs), q.dtype)
        row_max = np.full(block_q, -np.inf, q.dtype)
        row_sum = np.zeros(block_q, q.dtype)
        for r in range(nq):
            for d in range(hs):
                qs[r, d] = q[b, h, i0 + r, d] * scale
        n_keys = i0 + nq + offset  # keys seen by the block's last row
        for j0 in range(0, n_keys, block_k):
            nk = min(block_k, n_keys - j0)
            for c in range(nk):
                for d in range(hs):
                    kt[d, c] = k[b, kh, j0 + c, d]
                    vb[c, d] = v[b, kh, j0 + c, d]
            # on the diagonal, rows r0.. in chunks that skip the keys they cannot see
            chunk = diagonal_chunk if j0 + nk - 1 > i0 + offset else nq
            for r0 in range(0, nq, chunk):
                nr = min(chunk, nq - r0)
                seen = max(0, min(nk, i0 + r0 + nr + offset - j0))
                s[r0:r0 + nr, :seen] = 0
                _matmul_add(s[r0:], qs[r0:], kt, nr, seen, hs)
            for r in range(nq):
                seen = max(0, min(nk, i0 + r + offset + 1 - j0))
                m = row_max[r]
                for c in range(seen):
                    m = max(m, s[r, c])
                total = q.dtype.type(0)
                for c in range(seen):
                    s[r, c] = fast_exp(s[r, c] - m)
                    total += s[r, c]
                s[r, seen:nk] = 0
                alpha = fast_exp(row_max[r] - m)  # rescales what earlier tiles summed
                row_max[r] = m
                row_sum[r] = row_sum[r] * alpha + total
                for d in range(hs):
                    acc[r, d] *= alpha
            for r0 in range(0, nq, chunk):
                nr = min(chunk, nq - r0)
                seen = max(0, min(nk, i0 + r0 + nr + offset - j0))
                _matmul_add(acc[r0:], s[r0:], vb, nr, hs, seen)
        for r in range(nq):
            inv = 1 / row_sum[r]
            for d in range(hs):
                out[b, h, i0 + r, d] = acc[r, d] * inv
            lse[b, h, i0 + r] = row_max[r] + np.log(row_sum[r])


@kernel(parallel=True)
def _attention_backward(dims, strides, dout, q, k, v, out, lse, dq, dk, dv, scale, block_q,
                        block_k, diagonal_chunk):
    # dout, out, q (B, NH, Tq, hs), k, v (B, NKV, Tk, hs), lse (B, NH, Tq) -> dq (B, NH, Tq, hs),
    # dk, dv (B, NKV, Tk, hs). One task = one key/value head, which owns its dk, dv and sums
    # them over the NH // NKV query heads that read it.
    # P = exp(q kᵀ·scale - lse) is recomputed tile by tile; dS = P * (dP - rowsum(dout * out)).
    # Tiles of P and dS are (query rows, keys); k, v, dk, dv are held transposed, (hs, keys), in
    # key tiles, so four of the five products run along the keys and one along hs.
    B, NH, NKV, Tq, Tk, hs = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    group = NH // NKV
    dout, out = _view(dout, strides[0], B, NH, Tq, hs), _view(out, strides[4], B, NH, Tq, hs)
    q, dq = _view(q, strides[1], B, NH, Tq, hs), _view(dq, strides[5], B, NH, Tq, hs)
    k, dk = _view(k, strides[2], B, NKV, Tk, hs), _view(dk, strides[6], B, NKV, Tk, hs)
    v, dv = _view(v, strides[3], B, NKV, Tk, hs), _view(dv, strides[7], B, NKV, Tk, hs)
    offset = Tk - Tq
    n_kblocks = (Tk + block_k - 1) // block_k
    for task in prange(B * NKV):
        b = task // NKV
        kh = task % NKV
        kr = np.empty((Tk, hs), q.dtype)  # k rows
        kt = np.empty((n_kblocks, hs, block_k), q.dtype)
        vt = np.empty((n_kblocks, hs, block_k), q.dtype)
        for j in range(Tk):
            for d in range(hs):
                kr[j, d] = k[b, kh, j, d]
                kt[j // block_k, d, j % block_k] = kr[j, d]
                vt[j // block_k, d, j % block_k] = v[b, kh, j, d]
        dkt = np.zeros((n_kblocks, hs, block_k), q.dtype)
        dvt = np.zeros((n_kblocks, hs, block_k), q.dtype)
        qs = np.empty((block_q, hs), q.dtype)  # q rows times scale
        qt = np.empty((hs, block_q), q.dtype)
        g = np.empty((block_q, hs), q.dtype)  # dout rows
        gt = np.empty((hs, block_q), q.dtype)
        dq_acc = np.empty((block_q, hs), q.dtype)
        row_lse = np.empty(block_q, q.dtype)
        delta = np.empty(block_q, q.dtype)  # rowsum(dout * out) = rowsum(dP * P)
        p = np.empty((block_q, block_k), q.dtype)  # scores, then P
        ds = np.empty((block_q, block_k), q.dtype)  # dP, then dS
        for h in range(kh * group, (kh + 1) * group):
            for i0 in range(0, Tq, block_q):
                nq = min(block_q, Tq - i0)
                for r in range(nq):
                    total = q.dtype.type(0)
                    for d in range(hs):
                        qs[r, d] = q[b, h, i0 + r, d] * scale
                        qt[d, r] = qs[r, d]
                        g[r, d] = dout[b, h, i0 + r, d]
                        gt[d, r] = g[r, d]
                        total += g[r, d] * out[b, h, i0 + r, d]
                    delta[r] = total
                    row_lse[r] = lse[b, h, i0 + r]
                dq_acc[:nq] = 0
                n_keys = i0 + nq + offset
                for j0 in range(0, n_keys, block_k):
                    nk = min(block_k, n_keys - j0)
                    jb = j0 // block_k
                    # on the diagonal, rows r0.. in chunks that skip the keys they cannot see
                    chunk = diagonal_chunk if j0 + nk - 1 > i0 + offset else nq
                    for r0 in range(0, nq, chunk):
                        nr = min(chunk, nq - r0)
                        seen = max(0, min(nk, i0 + r0 + nr + offset - j0))
                        p[r0:r0 + nr, :seen] = 0
                        _matmul_add(p[r0:], qs[r0:], kt[jb], nr, seen, hs)
                        ds[r0:r0 + nr, :seen] = 0
                        _matmul_add(ds[r0:], g[r0:], vt[jb], nr, seen, hs)
                    for r in range(nq):
                        seen = max(0, min(nk, i0 + r + offset + 1 - j0))
                        for c in range(seen):
                            p[r, c] = fast_exp(p[r, c] - row_lse[r])
                            ds[r, c] = p[r, c] * (ds[r, c] - delta[r])
                        p[r, seen:nk] = 0
                        ds[r, seen:nk] = 0
                    for r0 in range(0, nq, chunk):
                        nr = min(chunk, nq - r0)
                        seen = max(0, min(nk, i0 + r0 + nr + offset - j0))
                        _matmul_add(dvt[jb], gt[:, r0:], p[r0:], hs, seen, nr)
                        _matmul_add(dkt[jb], qt[:, r0:], ds[r0:], hs, seen, nr)  # qt: dk's scale
                        _matmul_add(dq_acc[r0:], ds[r0:], kr[j0:], nr, hs, seen)
                for r in range(nq):
                    for d in range(hs):
                        dq[b, h, i0 + r, d] = dq_acc[r, d] * scale
        for j in range(Tk):
            for d in range(hs):
                dk[b, kh, j, d] = dkt[j // block_k, d, j % block_k]
                dv[b, kh, j, d] = dvt[j // block_k, d, j % block_k]


_attention_forward_serial = serial_twin(_attention_forward)
_attention_backward_serial = serial_twin(_attention_backward)


def _dims(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    B, NH, Tq, hs = q.shape
    return np.array([B, NH, k.shape[1], Tq, k.shape[2], hs], np.int64)


def _work(q: np.ndarray, k: np.ndarray) -> int:
    B, NH, Tq, hs = q.shape
    return B * NH * Tq * k.shape[2] * hs


def _check_inputs(op: str, **arrays) -> np.dtype:
    """The one float dtype of ``arrays`` (TypeError if they have several or a non-float one)."""
    for key, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{op}: {key} must be a numpy.ndarray, got {type(a).__name__}")
    (first, a), *rest = arrays.items()
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {first} must be float32 or float64, got {a.dtype}")
    for key, b in rest:
        if b.dtype != a.dtype:
            raise TypeError(f"{op}: {key} is {b.dtype} but {first} is {a.dtype}")
    return a.dtype


def _check_qkv(op: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4:
        raise ValueError(f"{op}: q must be (B, NH, Tq, hs) and k, v (B, NKV, Tk, hs), "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}")
    B, NH, Tq, hs = q.shape
    NKV = k.shape[1]
    if k.shape[0] != B or k.shape[3] != hs or not 0 < Tq <= k.shape[2] or 0 in q.shape \
            or NKV == 0 or NH % NKV:
        raise ValueError(f"{op}: q {q.shape} and k, v {k.shape} need the same non-empty B and "
                         "hs, a number of key/value heads NKV that divides NH, and 0 < Tq <= Tk")


def _check_output(op: str, key: str, a, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A new (B, NH, T, hs) array if ``a`` is None, else ``a`` once it is fit to write into."""
    if a is None:
        return np.empty(shape, dtype)
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{op}: {key} must be a {dtype} array of shape {shape}, got {got}")
    if min(a.strides) < 0 or not a.flags.writeable:
        raise ValueError(f"{op}: {key} must be writeable with non-negative strides")
    return a


def _readable(a: np.ndarray) -> np.ndarray:
    """``a``, or a contiguous copy when a negative stride keeps ``_flat`` from viewing it or
    its last axis is not contiguous (``_attend_rows_directly`` reads rows as they lie)."""
    if min(a.strides) >= 0 and (a.shape[-1] == 1 or a.strides[-1] == a.itemsize):
        return a
    return np.ascontiguousarray(a)


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                      out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Causal softmax(q kᵀ · scale) v, and the row log-sum-exp of the scaled scores.

    q is (B, NH, Tq, hs), k and v (B, NKV, Tk, hs) with Tq <= Tk: query row i sees keys
    j <= i + Tk - Tq, so a KV cache works. With NKV < NH (grouped-query attention; NKV must
    divide NH) query head h reads key/value head h // (NH // NKV), without copies. Views (e.g. slices of a qkv buffer) are read in
    place. ``out`` is written into if given; by default it is a (B, NH, Tq, hs) view of a
    (B, Tq, NH, hs) buffer, so ``out.transpose(0, 2, 1, 3).reshape(B, Tq, NH * hs)`` is free.

    >>> q = k = np.zeros((1, 1, 2, 2), np.float32)
    >>> v = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    >>> attention_forward(q, k, v, 1.0)[0][0, 0]  # row 1 averages both values
    array([[1., 2.],
           [2., 3.]], dtype=float32)
    """
    op = "attention_forward"
    dtype = _check_inputs(op, q=q, k=k, v=v)
    _check_qkv(op, q, k, v)
    B, NH, Tq, hs = q.shape
    if out is None:
        out = np.empty((B, Tq, NH, hs), dtype).transpose(0, 2, 1, 3)
    out = _check_output(op, "out", out, q.shape, dtype)
    lse = np.empty((B, NH, Tq), dtype)
    q, k, v = _readable(q), _readable(k), _readable(v)
    buffers, strides = _flat(q, k, v, out)
    run = _attention_forward if _work(q, k) >= PARALLEL_MIN_WORK else _attention_forward_serial
    run(_dims(q, k), strides, *buffers, lse, dtype.type(scale), BLOCK_Q, BLOCK_K, DIAGONAL_CHUNK)
    return out, lse


def attention_backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                       out: np.ndarray, lse: np.ndarray, scale: float,
                       dq: np.ndarray | None = None, dk: np.ndarray | None = None,
                       dv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dq, dk, dv) of ``attention_forward``, from dout and the forward's out and lse.

    dk and dv have k's shape: a key/value head shared by several query heads gets their sum.
    dq, dk, dv are written into when given (views too, e.g. slices of one (B, T, 3, NH, hs)
    buffer, so a GPT gets d(qkv) without a copy); otherwise they are allocated.
    """
    op = "attention_backward"
    dtype = _check_inputs(op, q=q, k=k, v=v, dout=dout, out=out, lse=lse)
    _check_qkv(op, q, k, v)
    B, NH, Tq = q.shape[:3]
    for key, a, shape in (("dout", dout, q.shape), ("out", out, q.shape), ("lse", lse, (B, NH, Tq))):
        if a.shape != shape:
            raise ValueError(f"{op}: {key} has shape {a.shape}, expected {shape}")
    dq = _check_output(op, "dq", dq, q.shape, dtype)
    dk = _check_output(op, "dk", dk, k.shape, dtype)
    dv = _check_output(op, "dv", dv, v.shape, dtype)
    dout, q, k, v, out = (_readable(a) for a in (dout, q, k, v, out))
    (dout_b, q_b, k_b, v_b, out_b, dq_b, dk_b, dv_b), strides = _flat(dout, q, k, v, out, dq, dk,
                                                                     dv)
    run = _attention_backward if _work(q, k) >= PARALLEL_MIN_WORK else _attention_backward_serial
    run(_dims(q, k), strides, dout_b, q_b, k_b, v_b, out_b, np.ascontiguousarray(lse), dq_b, dk_b,
        dv_b, dtype.type(scale), BLOCK_Q, BLOCK_K, DIAGONAL_CHUNK)
    return dq, dk, dv

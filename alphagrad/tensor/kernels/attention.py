"""Fused causal self-attention: flash-style forward and backward kernels.

No (T, T) matrix is ever stored. The forward walks each block of query rows across the key
tiles it may see with an online softmax and keeps only the row log-sum-exp; the backward
recomputes the probabilities from q, k and that log-sum-exp.

Layout, chosen by measurement (one core, float32, 64-key tiles): tiles are held keys × queries,
with the block's queries in reverse order. Then the products that make scores and dP run along
the query axis, which is long (up to BLOCK_Q); the output, dq, dk and dv run along the head
dimension over rows of v, k, q and dout copied (the latter two in the same reversed order) and
padded to whole register tiles, so that the output and dq are stored as rows. Elsewhere key and
value rows are read where they lie. The causal mask is an upper bound on each key's row (key j
is seen by the last queries, the first columns), so no loop starts anywhere but 0 (see
_matmul_add). Every product is one kernel that keeps an 8 x 16 tile of sums in registers for
its whole reduction: 105-112 GFLOP/s on one core at 48 x 256 x 64 in isolation, against 75-90
for the 4 x 4 blocks with sums in memory it replaced; 4 x 32 tiles ran as fast alone but cut
the causal triangle more coarsely (6-21% slower inside the kernels), and 12 or 16 rows spill.
BLAS on the tiles was slower: sgemm through np.dot inside the kernel ran at 40-60 GFLOP/s at
these shapes, and its larger calls start OpenBLAS's own threads inside ours.
"""

from __future__ import annotations

import numpy as np
from numba import carray, prange
from numpy.lib.stride_tricks import as_strided

from alphagrad._jit import kernel
from alphagrad.tensor.dtypes import FLOAT_DTYPES
from alphagrad.tensor.kernels._address import flat_at, table
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._registers import stack_empty
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

# query rows per block (the vectorised axis of every product) and keys per tile
BLOCK_Q = 256
BLOCK_K = 64
# the register tile of _matmul_add: rows of a x columns of b (eight 16-lane float32 vectors);
# blocks of queries are padded to a multiple of TILE_W columns
TILE_ROWS, TILE_W = 8, 16  # TILE_ROWS is also the eight named scalars a0..a7 of _matmul_add
TILE_SIZE = TILE_ROWS * TILE_W  # a constant of its own: stack_empty needs a literal
# a block of fewer query rows than this skips the tiles (see _attend_rows_directly)
DIRECT_ROWS = 4
# below this much work (B·NH·Tq·Tk·hs) a call runs the serial twin (measured on 2 cores, OpenMP
# layer: forward + backward 1.26x faster on two threads at (2, 4, 64, 16), 0.5M; a decoding
# step 0.93x at (1, 6, 256, 64), 0.1M, and 1.2x at (1, 12, 1024, 64), 0.8M)
PARALLEL_MIN_WORK = 1 << 18
NO_LIMIT = 1 << 62  # a limit of _matmul_add that masks nothing


@kernel()
def _matmul_add(acc, a, b, nx, ny, nz, x_limit, z_limit, a_limit):
    # acc[:nx, :ny] += a[:nx, :nz] @ b[:nz, :ny], vectorised along y, where row x of a meets
    # only the columns y < x_limit - x, row z of b only y < z_limit - z, and row x of a is zero
    # from z = a_limit - x on (the causal mask: x or z is a key, y or z the reversed queries).
    # ny is a multiple of TILE_W. A tile of TILE_ROWS x TILE_W sums stays in registers across
    # the whole z loop: a step of z loads TILE_ROWS scalars of a and one row of b and does
    # TILE_ROWS x TILE_W multiply-adds. A tile the mask cuts is computed whole: _softmax_tile
    # and _softmax_backward_tile zero its masked entries (see _tile_end), and a tile reads rows
    # of b and a past their masks as far as its own extent, so those entries must be zero.
    # Indices along y are unsigned: Numba would check a signed index for wraparound, which
    # stops LLVM from vectorising.
    sums = carray(stack_empty(TILE_SIZE, acc.dtype), (TILE_ROWS, TILE_W))
    x_tiles = nx - nx % TILE_ROWS
    for x in range(0, x_tiles, TILE_ROWS):
        for y0 in range(0, min(ny, x_limit - x), TILE_W):
            for r in range(TILE_ROWS):
                for y in range(TILE_W):
                    sums[r, y] = acc[x + r, np.uint64(y0 + y)]
            for z in range(min(nz, z_limit - y0, a_limit - x)):
                b_z = b[z]
                a0, a1, a2, a3 = a[x, z], a[x + 1, z], a[x + 2, z], a[x + 3, z]
                a4, a5, a6, a7 = a[x + 4, z], a[x + 5, z], a[x + 6, z], a[x + 7, z]
                for y in range(TILE_W):
                    b_zy = b_z[np.uint64(y0 + y)]
                    sums[0, y] += a0 * b_zy
                    sums[1, y] += a1 * b_zy
                    sums[2, y] += a2 * b_zy
                    sums[3, y] += a3 * b_zy
                    sums[4, y] += a4 * b_zy
                    sums[5, y] += a5 * b_zy
                    sums[6, y] += a6 * b_zy
                    sums[7, y] += a7 * b_zy
            for r in range(TILE_ROWS):
                for y in range(TILE_W):
                    acc[x + r, np.uint64(y0 + y)] = sums[r, y]
    for x in range(x_tiles, nx):
        acc_x = acc[x]
        for y0 in range(0, min(ny, x_limit - x), TILE_W):
            for z in range(min(nz, z_limit - y0, a_limit - x)):
                a_xz, b_z = a[x, z], b[z]
                for y in range(TILE_W):
                    acc_x[np.uint64(y0 + y)] += a_xz * b_z[np.uint64(y0 + y)]


@kernel()
def _operand(places, i, like):
    # the 1-d buffer of operand i of a table (see _address.table), of like's dtype: the kernels
    # view their operands so, and compile once per dtype whatever the arrays' layouts
    return flat_at(places[i, 0], places[i, 1], like)


@kernel()
def _view(buffer, strides, B, NH, T, hs):
    # the (B, NH, T, hs) array that a table row describes
    return as_strided(buffer, (B, NH, T, hs), (strides[0], strides[1], strides[2], strides[3]))


@kernel()
def _zero(block):
    # block[:, :] = 0 for a 2-d view. A slice assignment compiles NumPy's broadcasting setitem
    # again at every place it is written (the parallel forward compiled in 11.7-14.2 s with
    # them, 8.7-9.8 s without); the tiles zeroed once per key tile keep theirs (the backward's
    # ran 1.06-1.11x slower through this loop, the forward's up to 1.02x).
    for r in range(block.shape[0]):
        for c in range(block.shape[1]):
            block[r, c] = 0


@kernel()
def _attend_rows_directly(q, k, v, steps, out, lse, b, h, kh, i0, nq, offset, scale):
    # The few query rows i0.. of query head (b, h), which reads key/value head kh: one row when
    # decoding with a KV cache. Scores are dot products with the key rows where they lie, four
    # keys per pass over hs, and the output sums four value rows per pass, so no tile is copied
    # or transposed. q, k, v are flat buffers whose last axis is contiguous, steps[n] the
    # (batch, head, row) strides of q, k, v in elements. Indices are unsigned so that Numba
    # adds no wraparound check, which would keep the loops along hs from vectorising.
    hs = out.shape[3]
    k0, v0 = b * steps[1, 0] + kh * steps[1, 1], b * steps[2, 0] + kh * steps[2, 1]
    ks, vs = steps[1, 2], steps[2, 2]
    p = np.empty(i0 + nq + offset + 3, q.dtype)
    acc = np.empty(hs, q.dtype)
    zero = q.dtype.type(0)
    for r in range(nq):
        i = i0 + r
        q0 = b * steps[0, 0] + h * steps[0, 1] + i * steps[0, 2]
        seen = i + offset + 1
        for c in range(0, seen, 4):
            r0 = k0 + c * ks
            r1, r2, r3 = r0 + min(1, seen - 1 - c) * ks, r0 + min(2, seen - 1 - c) * ks, \
                r0 + min(3, seen - 1 - c) * ks  # past the last key, reread it
            s0 = s1 = s2 = s3 = zero
            for d in range(hs):
                qd = q[np.uint64(q0 + d)]
                s0 += qd * k[np.uint64(r0 + d)]
                s1 += qd * k[np.uint64(r1 + d)]
                s2 += qd * k[np.uint64(r2 + d)]
                s3 += qd * k[np.uint64(r3 + d)]
            p[c], p[c + 1], p[c + 2], p[c + 3] = s0 * scale, s1 * scale, s2 * scale, s3 * scale
        m = p[0]
        for c in range(seen):
            m = max(m, p[c])
        total = zero
        for c in range(seen):
            p[c] = fast_exp(p[c] - m)
            total += p[c]
        for c in range(seen, seen + 3):
            p[c] = 0
        for d in range(hs):
            acc[d] = 0
        for c in range(0, seen, 4):
            r0 = v0 + c * vs
            r1, r2, r3 = r0 + min(1, seen - 1 - c) * vs, r0 + min(2, seen - 1 - c) * vs, \
                r0 + min(3, seen - 1 - c) * vs
            p0, p1, p2, p3 = p[c], p[c + 1], p[c + 2], p[c + 3]
            for d in range(hs):
                acc[d] += (p0 * v[np.uint64(r0 + d)] + p1 * v[np.uint64(r1 + d)]
                           + p2 * v[np.uint64(r2 + d)] + p3 * v[np.uint64(r3 + d)])
        for d in range(hs):
            out[b, h, i, d] = acc[d] / total
        lse[b, h, i] = m + np.log(total)


@kernel()
def _padded(n):
    # n rounded up to a whole number of register tiles
    return (n + TILE_W - 1) // TILE_W * TILE_W


@kernel()
def _tile_end(y, limit, width):
    # the columns of row y of a (keys, queries) tile up to which _matmul_add(..., x_limit=limit)
    # computed it: whole tiles of TILE_W from 0 while they start below the mask of the tile's
    # first row
    return min(width, _padded(limit - (y - y % TILE_ROWS)))


@kernel()
def _load_block(flat, steps, b, h, last, nq, hs, scale, dst):
    # dst[d, c] = scale * element d of row last - c of head (b, h) of a flat (B, NH, T, hs)
    # array with element strides steps. Flat buffers and unsigned indices (no wraparound
    # checks) make these copies several times cheaper than indexing 4-d strided views.
    first = b * steps[0] + h * steps[1] + (last - nq + 1) * steps[2]
    for d in range(hs):
        column, dst_d = flat[first + d * steps[3]:], dst[d]
        for c in range(nq):
            dst_d[c] = column[np.uint64((nq - 1 - c) * steps[2])] * scale


@kernel()
def _load_rows(flat, steps, b, h, first, step, n, hs, scale, dst):
    # dst[c, :hs] = scale * row first + c·step (c < n) of head (b, h) of a flat (B, NH, T, hs)
    # array whose rows are contiguous (see _readable), with element strides steps
    for c in range(n):
        row, dst_c = flat[b * steps[0] + h * steps[1] + (first + c * step) * steps[2]:], dst[c]
        for d in range(hs):
            dst_c[d] = row[np.uint64(d)] * scale


@kernel()
def _store_rows(src, first, step, n, hs, scale, flat, steps, b, h):
    # row first + j·step (j < n) of head (b, h) of the flat array = src[j, :hs] * scale. Rows
    # are mostly contiguous (an output the caller passed may not be), and a loop with a stride
    # known to be 1 is vectorised: a 256 x 64 block took 10 µs through the strided loop.
    for j in range(n):
        row = flat[b * steps[0] + h * steps[1] + (first + j * step) * steps[2]:]
        if steps[3] == 1:
            for d in range(hs):
                row[np.uint64(d)] = src[j, d] * scale
        else:
            for d in range(hs):
                row[np.uint64(d * steps[3])] = src[j, d] * scale


@kernel()
def _softmax_tile(s, nk, nq, limit, row_max, row_sum, alpha):
    # s (keys, reversed queries): one tile of scores -> exp(s - running max) in place; key y is
    # seen by the columns c < limit - y, and the columns past them that a product tile filled
    # and the next product reads are zeroed (see _tile_end). Updates each query's running max
    # and sum, and leaves in alpha[:limit] the factor that rescales what earlier tiles summed
    # (the columns from limit on see no key of the tile).
    for c in range(nq):
        alpha[c] = row_max[c]
    for y in range(nk):
        for c in range(min(nq, limit - y)):
            row_max[c] = max(row_max[c], s[y, c])
    for c in range(min(nq, limit)):
        alpha[c] = fast_exp(alpha[c] - row_max[c])
        row_sum[c] *= alpha[c]
    for y in range(nk):
        seen = min(nq, limit - y)
        for c in range(seen):
            s[y, c] = fast_exp(s[y, c] - row_max[c])
            row_sum[c] += s[y, c]
        for c in range(seen, _tile_end(y, limit, s.shape[1])):
            s[y, c] = 0


@kernel()
def _softmax_backward_tile(p, ds, nk, nq, limit, row_lse, delta):
    # p (keys, reversed queries) scores -> P = exp(p - lse); ds: dP -> dS = P * (dP - delta);
    # masked as in _softmax_tile
    for y in range(nk):
        seen = min(nq, limit - y)
        for c in range(seen):
            p[y, c] = fast_exp(p[y, c] - row_lse[c])
            ds[y, c] = p[y, c] * (ds[y, c] - delta[c])
        for c in range(seen, _tile_end(y, limit, p.shape[1])):
            p[y, c] = ds[y, c] = 0


@kernel(parallel=True)
def _attention_forward(dims, strides, places, lse, scale, block_q, block_k):
    # q (B, NH, Tq, hs), k, v (B, NKV, Tk, hs) -> out (B, NH, Tq, hs), lse (B, NH, Tq); query
    # head h reads key/value head h // (NH // NKV) (grouped-query attention when NKV < NH).
    # One task = one block of query rows of one head, walked across its key tiles with an online
    # softmax. Blocks of fewer than DIRECT_ROWS rows (decoding) skip the tiles.
    B, NH, NKV, Tq, Tk, hs = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    group = NH // NKV
    steps = strides // lse.itemsize  # q, k, v, out strides in elements
    flat_q, flat_k = _operand(places, 0, scale), _operand(places, 1, scale)
    flat_v, flat_out = _operand(places, 2, scale), _operand(places, 3, scale)
    out = _view(flat_out, strides[3], B, NH, Tq, hs)
    k = _view(flat_k, strides[1], B, NKV, Tk, hs)
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
        last = i0 + nq - 1  # column c holds query row last - c
        width = _padded(nq)
        n_keys = last + offset + 1  # keys seen by the block's last row
        one = k.dtype.type(1)
        qt = np.zeros((hs, width), k.dtype)  # the block's q rows times scale
        s = np.empty((block_k, width), k.dtype)  # scores k·qᵀ, then probabilities
        v_rows = np.zeros((n_keys, _padded(hs)), k.dtype)  # the value rows seen, padded
        o_rows = np.zeros((nq, _padded(hs)), k.dtype)  # output rows, not yet normalised
        row_max = np.full(nq, -np.inf, k.dtype)
        row_sum = np.zeros(nq, k.dtype)
        alpha = np.empty(nq, k.dtype)
        _load_block(flat_q, steps[0], b, h, last, nq, hs, scale, qt)
        _load_rows(flat_v, steps[2], b, kh, 0, 1, n_keys, hs, one, v_rows)
        for j0 in range(0, n_keys, block_k):
            nk = min(block_k, n_keys - j0)
            limit = n_keys - j0  # key y of the tile is seen by the columns c < limit - y
            s[:nk] = 0
            _matmul_add(s, k[b, kh, j0:], qt, nk, width, hs, limit, NO_LIMIT, NO_LIMIT)
            _softmax_tile(s, nk, nq, limit, row_max, row_sum, alpha)
            for c in range(min(nq, limit) if j0 else 0):  # the first tile finds o_rows zero
                for d in range(hs):
                    o_rows[c, d] *= alpha[c]
            # rows of the output, so that they are stored as they lie (a transposed store into
            # the (B, T, NH, hs) output took 25 of 157 µs per 256 x 64 head)
            _matmul_add(o_rows, s.T, v_rows[j0:], nq, o_rows.shape[1], nk, NO_LIMIT, NO_LIMIT,
                        limit)
        for c in range(nq):
            lse[b, h, last - c] = row_max[c] + np.log(row_sum[c])
            for d in range(hs):
                o_rows[c, d] /= row_sum[c]
        _store_rows(o_rows, last, -1, nq, hs, one, flat_out, steps[3], b, h)


@kernel(parallel=True)
def _attention_backward(dims, strides, places, lse, scale, block_q, block_k):
    # dout, out, q (B, NH, Tq, hs), k, v (B, NKV, Tk, hs), lse (B, NH, Tq) -> dq (B, NH, Tq, hs),
    # dk, dv (B, NKV, Tk, hs). One task = one key/value head, which owns its dk, dv and sums
    # them over the NH // NKV query heads that read it.
    # P = exp(k qᵀ·scale - lse) is recomputed tile by tile; dS = P * (dP - rowsum(dout * out)).
    # Tiles of P and dS are (keys, reversed queries), as in the forward.
    B, NH, NKV, Tq, Tk, hs = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    group = NH // NKV
    steps = strides // lse.itemsize  # dout, q, k, v, out, dq, dk, dv strides in elements
    dout, q, k = _operand(places, 0, scale), _operand(places, 1, scale), _operand(places, 2, scale)
    v, out, dq = _operand(places, 3, scale), _operand(places, 4, scale), _operand(places, 5, scale)
    dk, dv = _operand(places, 6, scale), _operand(places, 7, scale)
    v = _view(v, strides[3], B, NKV, Tk, hs)
    offset = Tk - Tq
    for task in prange(B * NKV):
        b = task // NKV
        kh = task % NKV
        hs_width = _padded(hs)
        dk_acc = np.zeros((Tk, hs_width), q.dtype)
        dv_acc = np.zeros((Tk, hs_width), q.dtype)
        q_rows = np.zeros((block_q, hs_width), q.dtype)  # q rows times scale
        g_rows = np.zeros((block_q, hs_width), q.dtype)  # dout rows
        dq_rows = np.empty((block_q, hs_width), q.dtype)  # dq rows, not yet times scale
        k_rows = np.zeros((Tk, hs_width), q.dtype)  # the key head, padded to whole tiles
        qt = np.empty((hs, _padded(block_q)), q.dtype)  # q rows times scale, transposed
        gt = np.empty((hs, _padded(block_q)), q.dtype)  # dout rows, transposed
        one = q.dtype.type(1)
        _load_rows(k, steps[2], b, kh, 0, 1, Tk, hs, one, k_rows)
        row_lse = np.empty(block_q, q.dtype)
        delta = np.empty(block_q, q.dtype)  # rowsum(dout * out) = rowsum(dP * P)
        p = np.empty((block_k, _padded(block_q)), q.dtype)  # scores, then P
        ds = np.empty((block_k, _padded(block_q)), q.dtype)  # dP, then dS
        for h in range(kh * group, (kh + 1) * group):
            for i0 in range(0, Tq, block_q):
                nq = min(block_q, Tq - i0)
                width = _padded(nq)
                last = i0 + nq - 1  # column c holds query row last - c
                # both layouts from the source: transposing q_rows in cache measured slower
                # (18 µs against 10 per 256 x 64 block)
                _load_rows(q, steps[1], b, h, last, -1, nq, hs, scale, q_rows)
                _load_rows(dout, steps[0], b, h, last, -1, nq, hs, one, g_rows)
                _load_block(q, steps[1], b, h, last, nq, hs, scale, qt)
                _load_block(dout, steps[0], b, h, last, nq, hs, one, gt)
                _zero(qt[:, nq:width])
                _zero(gt[:, nq:width])
                for c in range(nq):
                    row_lse[c] = lse[b, h, last - c]
                    g_row = dout[b * steps[0, 0] + h * steps[0, 1] + (last - c) * steps[0, 2]:]
                    o_row = out[b * steps[4, 0] + h * steps[4, 1] + (last - c) * steps[4, 2]:]
                    total = q.dtype.type(0)
                    for d in range(hs):
                        total += g_row[d] * o_row[d]
                    delta[c] = total
                _zero(dq_rows[:nq])
                n_keys = last + offset + 1
                for j0 in range(0, n_keys, block_k):
                    nk = min(block_k, n_keys - j0)
                    limit = n_keys - j0
                    p[:nk, :width] = 0
                    ds[:nk, :width] = 0
                    _matmul_add(p, k_rows[j0:], qt, nk, width, hs, limit, NO_LIMIT, NO_LIMIT)
                    _matmul_add(ds, v[b, kh, j0:], gt, nk, width, hs, limit, NO_LIMIT, NO_LIMIT)
                    _softmax_backward_tile(p, ds, nk, nq, limit, row_lse, delta)
                    _matmul_add(dv_acc[j0:], p, g_rows, nk, hs_width, nq, NO_LIMIT, NO_LIMIT,
                                limit)
                    _matmul_add(dk_acc[j0:], ds, q_rows, nk, hs_width, nq, NO_LIMIT, NO_LIMIT,
                                limit)  # q_rows: scale
                    _matmul_add(dq_rows, ds.T, k_rows[j0:], nq, hs_width, nk, NO_LIMIT, NO_LIMIT,
                                limit)
                _store_rows(dq_rows, last, -1, nq, hs, scale, dq, steps[5], b, h)
        _store_rows(dk_acc, 0, 1, Tk, hs, one, dk, steps[6], b, kh)
        _store_rows(dv_acc, 0, 1, Tk, hs, one, dv, steps[7], b, kh)


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
    """``a``, or a contiguous copy when a negative stride keeps ``table`` from describing it or
    its last axis is not contiguous (``_attend_rows_directly`` reads rows as they lie)."""
    if min(a.strides) >= 0 and (a.shape[-1] == 1 or a.strides[-1] == a.itemsize):
        return a
    return np.ascontiguousarray(a)


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                      out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Causal softmax(q kᵀ · scale) v, and the row log-sum-exp of the scaled scores.

    q is (B, NH, Tq, hs), k and v (B, NKV, Tk, hs) with Tq <= Tk: query row i sees keys
    j <= i + Tk - Tq, so a KV cache works. With NKV < NH (grouped-query attention; NKV must
    divide NH) query head h reads key/value head h // (NH // NKV), without copies. Views (e.g.
    slices of a qkv buffer) are read in place. ``out`` is written into if given; by default it
    is a (B, NH, Tq, hs) view of a (B, Tq, NH, hs) buffer, so
    ``out.transpose(0, 2, 1, 3).reshape(B, Tq, NH * hs)`` is free.

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
    out = np.empty((B, Tq, NH, hs), dtype).transpose(0, 2, 1, 3) if out is None else \
        _check_output(op, "out", out, q.shape, dtype)
    lse = np.empty((B, NH, Tq), dtype)
    q, k, v = _readable(q), _readable(k), _readable(v)
    places, strides = table(q, k, v, out)
    run = _attention_forward if use_parallel(_work(q, k), PARALLEL_MIN_WORK) else \
        _attention_forward_serial
    run(_dims(q, k), strides, places, lse, dtype.type(scale), BLOCK_Q, BLOCK_K)
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
    for key, a, shape in (("dout", dout, q.shape), ("out", out, q.shape),
                          ("lse", lse, (B, NH, Tq))):
        if a.shape != shape:
            raise ValueError(f"{op}: {key} has shape {a.shape}, expected {shape}")
    dq = _check_output(op, "dq", dq, q.shape, dtype)
    dk = _check_output(op, "dk", dk, k.shape, dtype)
    dv = _check_output(op, "dv", dv, v.shape, dtype)
    dout, q, k, v, out = (_readable(a) for a in (dout, q, k, v, out))
    places, strides = table(dout, q, k, v, out, dq, dk, dv)
    run = _attention_backward if use_parallel(_work(q, k), PARALLEL_MIN_WORK) else \
        _attention_backward_serial
    run(_dims(q, k), strides, places, np.ascontiguousarray(lse), dtype.type(scale), BLOCK_Q,
        BLOCK_K)
    return dq, dk, dv

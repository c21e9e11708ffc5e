"""Matrix products on the kernels' own threads: each thread runs its share through one-thread BLAS.

Every GEMM is cut into one piece per thread (blocks of rows or columns of the output, or whole
entries of a batch) inside a parallel loop, and each piece is a call to the BLAS library's own
single-threaded GEMM, so GEMMs and kernels share one thread pool (``tensor.threads`` says why).
Products of equal work that are needed together, as a layer's input and weight gradients, run in
one loop as whole GEMMs side by side instead (``matmuls``): no operand is packed twice by two
threads, and the pool starts one loop instead of two.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from alphagrad._jit import kernel
from alphagrad.tensor.blas import BLAS
from alphagrad.tensor.kernels._address import address, flat_at
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel
from alphagrad.tensor.kernels.gelu import (
    FORMS,
    bias_gelu_forward,
    check_form,
    gelu_exact,
    gelu_tanh,
)
from alphagrad.tensor.threads import get_num_threads, one_pool

# Below this many multiply-adds a GEMM runs on the calling thread (about 10 µs of one core).
PARALLEL_MIN_WORK = 1 << 20
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enums
_INT32_MAX = (1 << 31) - 1  # the largest size or leading dimension a 32-bit-integer BLAS takes


@intrinsic
def _cblas_gemm(typingctx, address, ilp64, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c,
                ldc):
    """C = alpha·op(A)·op(B) through the ``cblas_?gemm`` at ``address`` (row-major, beta 0),
    whose sizes and leading dimensions are 64-bit integers if ``ilp64``, else 32-bit; the
    matrices are byte addresses and every integer is passed in as int64."""
    if not isinstance(alpha, types.Float) or not isinstance(ilp64, types.Boolean):
        return None
    ints = (m, n, k, lda, ldb, ldc, address, trans_a, trans_b, a, b, c)
    if not all(isinstance(t, types.Integer) for t in ints):
        return None

    def codegen(context, builder, signature, args):
        i32, real = ir.IntType(32), context.get_value_type(alpha)
        pointer = ir.IntType(8).as_pointer()

        def value(i, kind=None):  # argument i as an int64, a pointer or an integer of kind
            v = context.cast(builder, args[i], signature.args[i], types.int64)
            if kind == "pointer":
                return builder.inttoptr(v, pointer)
            return v if kind is None or kind.width == 64 else builder.trunc(v, kind)

        def call(size):
            function = ir.FunctionType(ir.VoidType(), [
                i32, i32, i32, size, size, size, real, pointer, size, pointer, size, real,
                pointer, size])
            gemm = builder.inttoptr(value(0), function.as_pointer())
            builder.call(gemm, [ir.Constant(i32, _ROW_MAJOR), value(2, i32), value(3, i32),
                                value(4, size), value(5, size), value(6, size), args[7],
                                value(8, "pointer"), value(9, size), value(10, "pointer"),
                                value(11, size), ir.Constant(real, 0.0), value(12, "pointer"),
                                value(13, size)])

        wide = context.cast(builder, args[1], signature.args[1], types.boolean)
        with builder.if_else(wide) as (then, otherwise):
            with then:
                call(ir.IntType(64))
            with otherwise:
                call(i32)
        return context.get_dummy_value()

    return types.void(address, ilp64, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c,
                      ldc), codegen


# Columns of _gemm_tasks's table, one row per product (addresses and steps in bytes): CBLAS's
# transpose flags, the sizes, A, B and C with their leading dimensions (in elements) and byte
# steps between batch entries and between rows of op(A) and columns of op(B), the item size,
# the batch entries, a bias added to every row of C and an array of C's shape and layout added
# to C (their addresses, or 0 for none), where GELU of the result goes (laid out as C; 0 for
# nowhere) and in which form (an index into gelu.FORMS), how the product is cut and into how
# many pieces, and one past its last task.
(TRANS_A, TRANS_B, M, N, K, A, LDA, A_ENTRY, A_ROW, B, LDB, B_ENTRY, B_COLUMN, C, LDC, C_ENTRY,
 ITEM, ENTRIES, BIAS, ADDEND, ACTIVATED, FORM, BY_ROWS, PIECES, END) = range(25)
_TANH = FORMS.index("tanh")


@kernel(parallel=True)
def _gemm_tasks(gemm, ilp64, alpha, products):
    # The tasks of a product are piece t % PIECES of batch entry t // PIECES, numbered on from
    # the last task of the row before; a piece is a block of rows of C (BY_ROWS) or of columns.
    for t in prange(products[-1, END]):
        g = 0
        while t >= products[g, END]:
            g += 1
        p = products[g]
        task = t - (products[g - 1, END] if g else 0)
        e, piece, pieces = task // p[PIECES], task % p[PIECES], p[PIECES]
        a, b, c = p[A] + e * p[A_ENTRY], p[B] + e * p[B_ENTRY], p[C] + e * p[C_ENTRY]
        m, n, c0, ldc = p[M], p[N], 0, p[LDC]
        if p[BY_ROWS]:
            r0, r1 = piece * m // pieces, (piece + 1) * m // pieces
            a, c, m = a + r0 * p[A_ROW], c + r0 * ldc * p[ITEM], r1 - r0
        else:
            c0, c1 = piece * n // pieces, (piece + 1) * n // pieces
            b, c, n = b + c0 * p[B_COLUMN], c + c0 * p[ITEM], c1 - c0
        _cblas_gemm(gemm, ilp64, p[TRANS_A], p[TRANS_B], m, n, p[K], alpha, a, p[LDA], b,
                    p[LDB], c, ldc)
        if m and (p[BIAS] or p[ADDEND] or p[ACTIVATED]):  # while the piece is still in cache
            rows = flat_at(c, (m - 1) * ldc + n, alpha)
            if p[BIAS]:
                bias = flat_at(p[BIAS] + c0 * p[ITEM], n, alpha)
                for i in range(m):
                    for j in range(n):
                        rows[np.uint64(i * ldc + j)] += bias[j]
            if p[ADDEND]:
                addend = flat_at(p[ADDEND] + (c - p[C]), (m - 1) * ldc + n, alpha)
                for i in range(m):
                    for j in range(n):
                        rows[np.uint64(i * ldc + j)] += addend[np.uint64(i * ldc + j)]
            if p[ACTIVATED]:
                activated = flat_at(p[ACTIVATED] + (c - p[C]), (m - 1) * ldc + n, alpha)
                for i in range(m):
                    if p[FORM] == _TANH:
                        for j in range(n):
                            activated[np.uint64(i * ldc + j)] = gelu_tanh(
                                rows[np.uint64(i * ldc + j)])
                    else:
                        for j in range(n):
                            activated[np.uint64(i * ldc + j)] = gelu_exact(
                                rows[np.uint64(i * ldc + j)])


_gemm_tasks_serial = serial_twin(_gemm_tasks)


def _layout(x: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of the last two axes of ``x``, or None when
    neither axis has unit stride."""
    (rows, cols), (row_bytes, col_bytes), item = x.shape[-2:], x.strides[-2:], x.itemsize
    if row_bytes % item or col_bytes % item:
        return None
    row_stride, col_stride = row_bytes // item, col_bytes // item
    if cols == 1 or col_stride == 1:  # the stride of an axis of one element is never used
        ld = row_stride if rows > 1 else cols
        if ld >= cols:
            return _NO_TRANS, ld
    if rows == 1 or row_stride == 1:
        ld = col_stride if cols > 1 else rows
        if ld >= rows:
            return _TRANS, ld
    return None


def _as_blas_takes(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """``x`` and its layout, copied to C order first if BLAS cannot read it as it lies."""
    layout = _layout(x)
    if layout is None:
        x = np.ascontiguousarray(x)
        layout = _layout(x)  # C order always has one: unit column stride, rows cols apart
    return x, layout


def _entries(x: np.ndarray, batch: tuple[int, ...]) -> tuple[np.ndarray, int] | None:
    """``x`` broadcast to ``batch`` entries as (view, byte step between entries), or None when
    its batch axes do not lie at one stride from each other."""
    x = np.broadcast_to(x, batch + x.shape[-2:])
    sizes, strides = x.shape[:-2], x.strides[:-2]
    step = strides[-1] if strides else 0
    for i in range(len(sizes) - 1):
        if sizes[i] > 1 and strides[i] != strides[i + 1] * sizes[i + 1]:
            return None
    return x, step


class _Product(NamedTuple):
    out: np.ndarray
    row: list[int] | None  # its row of _gemm_tasks's table, or None: NumPy computed ``out``
    operands: tuple[np.ndarray, ...] = ()  # what the row's addresses point into, kept alive


def _plan(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None,
          addend: np.ndarray | None = None) -> _Product:
    if not (one_pool() and a.ndim >= 2 and b.ndim >= 2 and a.dtype == b.dtype
            and a.dtype in (np.float32, np.float64) and a.shape[-1] == b.shape[-2]
            and (bias is None or (bias.dtype == a.dtype and bias.shape == b.shape[-1:]))):
        return _numpy(a, b, bias, addend)
    (m, k), n = a.shape[-2:], b.shape[-1]
    batch = a.shape[:-2] if a.shape[:-2] == b.shape[:-2] else \
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    entries = math.prod(batch)
    if 0 in (m, n, k, entries) or (addend is not None and (
            addend.dtype != a.dtype or addend.shape != batch + (m, n))):
        return _numpy(a, b, bias, addend)
    (a, layout_a), (b, layout_b) = _as_blas_takes(a), _as_blas_takes(b)
    if not BLAS.ilp64 and max(m, n, k, layout_a[1], layout_b[1]) > _INT32_MAX:
        return _numpy(a, b, bias, addend)
    a_step, b_step = 0, 0
    if batch:
        a_entries, b_entries = _entries(a, batch), _entries(b, batch)
        if a_entries is None or b_entries is None:
            return _numpy(a, b, bias, addend)
        (a, a_step), (b, b_step) = a_entries, b_entries
    out = np.empty(batch + (m, n), a.dtype)
    bias = None if bias is None else np.ascontiguousarray(bias)
    addend = None if addend is None else np.ascontiguousarray(addend)  # laid out as out
    row = [layout_a[0], layout_b[0], m, n, k, address(a), layout_a[1], a_step, a.strides[-2],
           address(b), layout_b[1], b_step, b.strides[-1], address(out), n,
           m * n * a.itemsize, a.itemsize, entries, 0 if bias is None else address(bias),
           0 if addend is None else address(addend), 0, 0, m >= n, 1, 0]
    return _Product(out, row, (a, b, bias, addend))


def _numpy(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None,
           addend: np.ndarray | None) -> _Product:
    out = np.matmul(a, b)
    if bias is not None:
        out += bias
    return _Product(out if addend is None else out + addend, None)


def _work(row: list[int]) -> int:
    return row[ENTRIES] * row[M] * row[N] * row[K]


def _run(rows: list[list[int]], dtype: np.dtype) -> None:
    """Products of one dtype and equal work in one loop, cut so that their tasks are a multiple
    of the threads: as many products as threads run whole, one per thread (a layer's input and
    weight gradients on 2 cores: side by side they took 0.86-0.95x the time of each cut in two,
    measured at a GPT's shapes)."""
    parallel = use_parallel(len(rows) * _work(rows[0]), PARALLEL_MIN_WORK)
    threads = get_num_threads()
    pieces = threads // math.gcd(sum(r[ENTRIES] for r in rows), threads) if parallel else 1
    end = 0
    for r in rows:
        r[PIECES] = pieces
        end = r[END] = end + r[ENTRIES] * pieces
    run = _gemm_tasks if parallel else _gemm_tasks_serial
    run(BLAS.sgemm if dtype == np.float32 else BLAS.dgemm, BLAS.ilp64, dtype.type(1.0),
        np.array(rows, np.int64))


def matmuls(*products: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """``[a @ b for a, b in products]``, each as ``matmul`` computes it; products of one dtype
    and equal work (a layer's input and weight gradients) run side by side in one parallel
    loop, others one after another.

    >>> x, g = np.ones((4, 2), np.float32), np.ones((4, 3), np.float32)
    >>> [p.shape for p in matmuls((g, np.ones((3, 2), np.float32)), (g.T, x))]
    [(4, 2), (3, 2)]
    """
    plans = [_plan(a, b) for a, b in products]
    groups: dict[tuple, list[list[int]]] = {}
    for p in plans:
        if p.row is not None:
            groups.setdefault((p.out.dtype, _work(p.row)), []).append(p.row)
    for (dtype, _), rows in groups.items():
        _run(rows, dtype)
    return [p.out for p in plans]


def matmul(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None,
           addend: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` for float arrays of at least two axes each (batch axes broadcast, as NumPy's),
    plus ``bias`` (its last axis) and ``addend`` (the product's shape) if given.

    The product runs on alphagrad's threads when the GEMM is large enough and the operands are
    float32 or float64 of one dtype in a layout BLAS takes, and each thread adds the bias and
    the addend to its piece while the piece is in cache (a residual connection's add, say);
    otherwise it is NumPy's ``@`` and ``+``.

    >>> matmul(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32))
    array([[3., 3., 3., 3.],
           [3., 3., 3., 3.]], dtype=float32)
    """
    plan = _plan(a, b, bias, addend)
    if plan.row is not None:
        _run([plan.row], plan.out.dtype)
    return plan.out


def matmul_gelu(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None,
                approximate: str = "tanh") -> tuple[np.ndarray, np.ndarray]:
    """``(h, gelu(h))`` with ``h = a @ b + bias``: a Linear's output and its GELU, each thread
    computing the GELU of its piece while the piece is in cache (the MLP's first layer; the
    backward needs ``h``). ``approximate`` is "tanh" or "none", as for ``gelu_forward``.

    >>> h, out = matmul_gelu(np.ones((1, 2), np.float32), np.ones((2, 2), np.float32), None)
    >>> h, out.round(4)
    (array([[2., 2.]], dtype=float32), array([[1.9546, 1.9546]], dtype=float32))
    """
    check_form("matmul_gelu", approximate)
    plan = _plan(a, b, bias)
    if plan.row is None:
        return plan.out, bias_gelu_forward(plan.out, None, approximate)
    out = np.empty_like(plan.out)
    plan.row[ACTIVATED], plan.row[FORM] = address(out), FORMS.index(approximate)
    _run([plan.row], plan.out.dtype)
    return plan.out, out

"""Matrix products on the kernels' own threads: each thread runs its share through one-thread BLAS.

Every GEMM is cut into one piece per thread (blocks of rows or columns of the output, or whole
entries of a batch) inside a parallel loop, and each piece is a call to the BLAS library's own
single-threaded GEMM, so GEMMs and kernels share one thread pool (``tensor.threads`` says why).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from alphagrad._jit import kernel
from alphagrad.tensor.blas import BLAS
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel
from alphagrad.tensor.threads import get_num_threads, one_pool

# Below this many multiply-adds a GEMM runs on the calling thread (about 10 µs of one core).
PARALLEL_MIN_WORK = 1 << 20
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS's enums


@intrinsic
def _cblas_gemm(typingctx, address, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc):
    """C = alpha·op(A)·op(B) through the ILP64 ``cblas_?gemm`` at ``address`` (row-major,
    beta 0); the matrices are byte addresses and every integer is passed as int64."""
    if not isinstance(alpha, types.Float):
        return None
    ints = (m, n, k, lda, ldb, ldc, address, trans_a, trans_b, a, b, c)
    if not all(isinstance(t, types.Integer) for t in ints):
        return None

    def codegen(context, builder, signature, args):
        i32, i64, real = ir.IntType(32), ir.IntType(64), context.get_value_type(alpha)
        pointer = ir.IntType(8).as_pointer()
        function = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, pointer,
                                                   i64, pointer, i64, real, pointer, i64])

        def value(i, kind):
            v = context.cast(builder, args[i], signature.args[i], types.int64)
            return builder.trunc(v, i32) if kind == "enum" else \
                builder.inttoptr(v, pointer) if kind == "pointer" else v

        call = builder.inttoptr(value(0, "int"), function.as_pointer())
        builder.call(call, [ir.Constant(i32, _ROW_MAJOR), value(1, "enum"), value(2, "enum"),
                            value(3, "int"), value(4, "int"), value(5, "int"), args[6],
                            value(7, "pointer"), value(8, "int"), value(9, "pointer"),
                            value(10, "int"), ir.Constant(real, 0.0), value(11, "pointer"),
                            value(12, "int")])
        return context.get_dummy_value()

    return types.void(address, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc), codegen


@kernel(parallel=True)
def _gemm_pieces(gemm, trans_a, trans_b, m, n, k, alpha, a, lda, a_steps, b, ldb, b_steps, c,
                 c_steps, batch, pieces, by_rows):
    # Task t is piece t % pieces of batch entry t // pieces: a block of rows of C (by_rows) or
    # of columns. a_steps = (entry, row) byte steps of op(A), b_steps = (entry, column) of op(B),
    # c_steps = (entry, row, column) of C.
    for t in prange(batch * pieces):
        e, p = t // pieces, t % pieces
        ae, be, ce = a + e * a_steps[0], b + e * b_steps[0], c + e * c_steps[0]
        if by_rows:
            r0, r1 = p * m // pieces, (p + 1) * m // pieces
            _cblas_gemm(gemm, trans_a, trans_b, r1 - r0, n, k, alpha, ae + r0 * a_steps[1], lda,
                        be, ldb, ce + r0 * c_steps[1], c_steps[1] // c_steps[2])
        else:
            c0, c1 = p * n // pieces, (p + 1) * n // pieces
            _cblas_gemm(gemm, trans_a, trans_b, m, c1 - c0, k, alpha, ae, lda,
                        be + c0 * b_steps[1], ldb, ce + c0 * c_steps[2], c_steps[1] // c_steps[2])


_gemm_pieces_serial = serial_twin(_gemm_pieces)


def _layout(x: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of the last two axes of ``x``, or None when
    neither axis has unit stride."""
    rows, cols = x.shape[-2:]
    if any(s % x.itemsize for s in x.strides[-2:]):
        return None
    row_stride, col_stride = (s // x.itemsize for s in x.strides[-2:])
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


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for float arrays of at least two axes each (batch axes broadcast, as NumPy's).

    The product runs on alphagrad's threads when the GEMM is large enough and the operands are
    float32 or float64 of one dtype in a layout BLAS takes; otherwise it is NumPy's ``@``.

    >>> matmul(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32))
    array([[3., 3., 3., 3.],
           [3., 3., 3., 3.]], dtype=float32)
    """
    if not (one_pool() and a.ndim >= 2 and b.ndim >= 2 and a.dtype == b.dtype
            and a.dtype in (np.float32, np.float64) and a.shape[-1] == b.shape[-2]):
        return np.matmul(a, b)
    (m, k), n = a.shape[-2:], b.shape[-1]
    batch = a.shape[:-2] if a.shape[:-2] == b.shape[:-2] else \
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    entries = math.prod(batch)
    if 0 in (m, n, k, entries):
        return np.matmul(a, b)
    (a, layout_a), (b, layout_b) = _as_blas_takes(a), _as_blas_takes(b)
    a_step, b_step = 0, 0
    if batch:
        a_entries, b_entries = _entries(a, batch), _entries(b, batch)
        if a_entries is None or b_entries is None:
            return np.matmul(a, b)
        (a, a_step), (b, b_step) = a_entries, b_entries
    out = np.empty(batch + (m, n), a.dtype)
    parallel = use_parallel(entries * m * n * k, PARALLEL_MIN_WORK)
    threads = get_num_threads()
    pieces = threads // math.gcd(entries, threads) if parallel else 1  # tasks: a multiple of threads
    item = a.itemsize
    run = _gemm_pieces if parallel else _gemm_pieces_serial
    run(BLAS.sgemm if a.dtype == np.float32 else BLAS.dgemm, layout_a[0], layout_b[0], m, n, k,
        a.dtype.type(1.0), a.ctypes.data, layout_a[1], (a_step, a.strides[-2]),
        b.ctypes.data, layout_b[1], (b_step, b.strides[-1]), out.ctypes.data,
        (m * n * item, n * item, item), entries, pieces, m >= n)
    return out

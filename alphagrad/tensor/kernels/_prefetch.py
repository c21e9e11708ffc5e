"""A software prefetch for kernels whose memory traffic comes in bursts.

The hardware prefetchers follow a demand stream; a kernel that reads a block of memory once and
then computes on it from L1 leaves that stream idle while it computes. Hinting the next block's
cache lines during the computation keeps memory busy instead.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from alphagrad._jit import kernel

LINE_BYTES = 64


@intrinsic
def _prefetch(typingctx, a, i):
    # llvm.prefetch(address, read, locality 2: into L2 and outer caches, data)
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(a, i), codegen


@kernel()
def prefetch_range(a, start, stop):
    """Hint ``a[start:stop]`` (1-D, clipped to ``a``) into the caches; returns at once."""
    for i in range(max(start, 0), min(stop, a.size), LINE_BYTES // a.itemsize):
        _prefetch(a, i)

"""Fixed-size scratch arrays on the stack, for products that keep their sums in registers.

Numba takes every array from the heap, where LLVM must assume any store may alias the inputs,
so a product's running sums go back to memory at every step. An array taken from the stack
cannot alias anything; when every index into it is a constant once its loops are unrolled,
LLVM promotes it to registers (scalar replacement of aggregates).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def stack_empty(typingctx, size, dtype):
    """Pointer to ``size`` uninitialised elements of ``dtype`` in the calling kernel's frame;
    ``size`` must be a compile-time constant. View it with ``numba.carray(ptr, shape)``."""
    if not isinstance(size, types.IntegerLiteral) or not isinstance(dtype, types.DType):
        return None
    n = size.literal_value

    def codegen(context, builder, signature, args):
        element = context.get_value_type(signature.return_type.dtype)
        return cgutils.alloca_once(builder, element, size=ir.Constant(ir.IntType(64), n))

    return types.CPointer(dtype.dtype)(size, dtype), codegen

"""``maxnum``: a float max that LLVM vectorises inside a reduction loop (a row max, say).

Python's ``max`` compiles to a compare and select, and LLVM vectorises a reduction over those
only under the ``nnan`` fast-math flag, which alphagrad never sets: the row max then runs one
element at a time, ten times slower than a row sum. ``llvm.maxnum`` is IEEE maxNum instead: a
NaN operand yields the other one, which keeps the reduction associative, so it vectorises with
no flag. A NaN in a row is then caught by the pass after the max (exp(NaN) is NaN).

Call it only from jitted code: ``row_max = maxnum(row_max, x[i, j])``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def maxnum(typingctx, a, b):
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        t = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [t], ir.FunctionType(t, [t, t]))
        return builder.call(fn, args)

    return a(a, b), codegen

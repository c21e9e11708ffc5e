"""The hot loops of the element-wise and row kernels compile to packed vector arithmetic.

A kernel can be correct and still run scalar: a signed loop index, for one, makes Numba check
for wraparound, which keeps LLVM from vectorising (a 7x slower AdamW step once). Cached kernels
cannot show their machine code, so each is compiled afresh, serially, with the kernels' own
options and the float32 types the public functions pass, and its assembly is searched for
packed float arithmetic on 256- or 512-bit registers.
"""

from __future__ import annotations

import re
import types

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest

from alphagrad._jit import OPTIONS
from alphagrad.tensor.kernels import adamw, attention, cross_entropy, gelu, layernorm, softmax

pytestmark = pytest.mark.skipif(not llvm.get_host_cpu_features().get("avx2"),
                                reason="packed float arithmetic is looked for in AVX2 registers")

PACKED_ARITHMETIC = re.compile(
    r"^\s*v(?:fn?m(?:add|sub)\d*|mul|add|sub|div|sqrt|max|min)ps\s.*%[yz]mm", re.MULTILINE)


def packed_arithmetic(kernel, signature) -> int:
    """How many packed float32 arithmetic instructions ``kernel`` compiles to, serially."""
    fresh = numba.njit(**OPTIONS)(kernel.py_func)
    fresh.compile(signature)
    return len(PACKED_ARITHMETIC.findall(fresh.inspect_asm(signature)))


def _axpy_signed(x, y, a, lo, hi):
    for i in range(lo, hi):
        y[i] = a * x[i] + y[i]


def _axpy_unsigned(x, y, a, lo, hi):
    for j in range(lo, hi):
        i = np.uint64(j)
        y[i] = a * x[i] + y[i]


def test_the_search_tells_a_scalar_loop_from_a_vector_one():
    signature = (numba.float32[::1], numba.float32[::1], numba.float32, numba.int64, numba.int64)
    scalar = types.SimpleNamespace(py_func=_axpy_signed)
    vector = types.SimpleNamespace(py_func=_axpy_unsigned)
    assert packed_arithmetic(scalar, signature) == 0
    assert packed_arithmetic(vector, signature) > 0


# float32 types as the public functions pass them: vectors, matrices (a: any layout), scalars
V, M, A = numba.float32[::1], numba.float32[:, ::1], numba.float32[:, :]
F, I, IV, IM = numba.float32, numba.int64, numba.int64[::1], numba.int64[:, ::1]
ROWWISE_GELU = (M, V, M)  # h, bias, out
ROWWISE_GELU_GRAD = (M, M, I, M, M)  # h, dout, parts, dh, dbias_parts
KERNELS = {
    "softmax forward": (softmax._softmax_forward, (M, M)),
    "softmax backward": (softmax._softmax_backward, (M, M, M)),
    "layer norm forward": (layernorm._layernorm_forward, (M, V, V, F, M, V, V)),
    "layer norm backward": (layernorm._layernorm_backward, (M, M, V, V, V, I, M, M, M)),
    "gelu forward": (gelu._gelu_forward, (V, V)),
    "gelu backward": (gelu._gelu_backward, (V, V, V)),
    "exact gelu forward": (gelu._gelu_erf_forward, (V, V)),
    "exact gelu backward": (gelu._gelu_erf_backward, (V, V, V)),
    "bias gelu forward": (gelu._bias_gelu_forward, ROWWISE_GELU),
    "bias gelu backward": (gelu._bias_gelu_backward, ROWWISE_GELU_GRAD),
    "bias exact gelu forward": (gelu._bias_gelu_erf_forward, ROWWISE_GELU),
    "bias exact gelu backward": (gelu._bias_gelu_erf_backward, ROWWISE_GELU_GRAD),
    "cross-entropy forward": (cross_entropy._cross_entropy_forward, (M, IV, I, F, V, V)),
    "cross-entropy backward": (cross_entropy._cross_entropy_backward, (M, IV, V, V, I, F, M)),
    "adamw": (adamw._adamw_steps, (IM, M, F, F, F, I)),
    "attention tile product": (attention._matmul_add, (M, A, M) + (I,) * 6),
    "attention tile softmax": (attention._softmax_tile, (M, I, I, I, V, V, V)),
    "attention tile softmax backward": (attention._softmax_backward_tile, (M, M, I, I, I, V, V)),
}


@pytest.mark.parametrize("name", KERNELS)
def test_hot_loops_are_vectorised(name):
    kernel, signature = KERNELS[name]
    assert packed_arithmetic(kernel, signature) > 0, f"{name} compiles to scalar code"

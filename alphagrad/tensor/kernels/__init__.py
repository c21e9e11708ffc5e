"""Numba kernels over ndarrays: forward/backward pairs that the autograd layer calls.

Each public function checks dtypes and shapes, then runs a private jitted kernel; the plain-NumPy
``reference`` module holds the same functions written from the math, for the tests.
"""

from alphagrad.tensor.kernels.adamw import adamw_step, adamw_steps
from alphagrad.tensor.kernels.attention import attention_backward, attention_forward
from alphagrad.tensor.kernels.cross_entropy import cross_entropy_backward, cross_entropy_forward
from alphagrad.tensor.kernels.decode_attention import slot_attention
from alphagrad.tensor.kernels.embedding import embedding_backward, embedding_forward
from alphagrad.tensor.kernels.gelu import (
    bias_gelu_backward,
    bias_gelu_forward,
    gelu_backward,
    gelu_forward,
)
from alphagrad.tensor.kernels.gemm import matmul, matmul_gelu, matmuls
from alphagrad.tensor.kernels.layernorm import layernorm_backward, layernorm_forward
from alphagrad.tensor.kernels.linear import linear_rows
from alphagrad.tensor.kernels.rmsnorm import rmsnorm_backward, rmsnorm_forward
from alphagrad.tensor.kernels.rope import rope_backward, rope_forward, rope_tables
from alphagrad.tensor.kernels.softmax import softmax_backward, softmax_forward
from alphagrad.tensor.kernels.swiglu import (
    silu_backward,
    silu_forward,
    swiglu_backward,
    swiglu_forward,
)

__all__ = [
    "adamw_step", "adamw_steps", "attention_backward", "attention_forward", "bias_gelu_backward",
    "bias_gelu_forward", "cross_entropy_backward", "cross_entropy_forward", "embedding_backward",
    "embedding_forward", "gelu_backward", "gelu_forward", "layernorm_backward",
    "layernorm_forward", "linear_rows", "matmul", "matmul_gelu", "matmuls", "rmsnorm_backward",
    "rmsnorm_forward", "rope_backward", "rope_forward", "rope_tables", "silu_backward",
    "silu_forward", "slot_attention", "softmax_backward", "softmax_forward", "swiglu_backward",
    "swiglu_forward",
]

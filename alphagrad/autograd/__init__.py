"""Reverse-mode automatic differentiation over the CPU backend."""

from alphagrad.autograd import functional
from alphagrad.autograd.creation import (
    arange,
    from_numpy,
    full,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from alphagrad.autograd.function import Function
from alphagrad.autograd.grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad
from alphagrad.autograd.gradcheck import gradcheck
from alphagrad.autograd.tensor import Tensor

__all__ = [
    "Function", "Tensor", "arange", "enable_grad", "from_numpy", "full", "functional", "gradcheck",
    "inference_mode", "is_grad_enabled", "no_grad", "ones", "ones_like", "rand", "rand_like", "randint",
    "randn", "randn_like", "tensor", "zeros", "zeros_like",
]

"""Elementwise primitives. Broadcast inputs get full-shape gradients; the engine sums them back."""

from __future__ import annotations

import numpy as np

from alphagrad.autograd.function import Function
from alphagrad.tensor import kernels


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return a * b

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.b if ctx.needs_grad(0) else None,
                grad * ctx.a if ctx.needs_grad(1) else None)


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return (-grad,)


class Pow(Function):
    """``x ** exponent`` for a Python-number exponent."""

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.x, ctx.exponent = x, exponent
        return x**exponent

    @staticmethod
    def backward(ctx, grad):
        x, e = ctx.x, ctx.exponent
        if e == 0:  # x**0 is constant: 0·x**-1 would give nan at x = 0
            return (np.zeros_like(grad),)
        return (grad * (e * x ** (e - 1)),)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.out = np.exp(x)
        return ctx.out

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.out,)


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return np.log(x)

    @staticmethod
    def backward(ctx, grad):
        return (grad / ctx.x,)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.out = np.sqrt(x)
        return ctx.out

    @staticmethod
    def backward(ctx, grad):
        return (grad / (2 * ctx.out),)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.out = np.tanh(x)
        return ctx.out

    @staticmethod
    def backward(ctx, grad):
        return (grad * (1 - ctx.out * ctx.out),)


class Sin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return np.sin(x)

    @staticmethod
    def backward(ctx, grad):
        return (grad * np.cos(ctx.x),)


class Cos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return np.cos(x)

    @staticmethod
    def backward(ctx, grad):
        return (-grad * np.sin(ctx.x),)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        # tanh form: no overflow for large |x|
        ctx.out = (0.5 * (np.tanh(0.5 * x) + 1)).astype(x.dtype, copy=False)
        return ctx.out

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.out * (1 - ctx.out),)


class Relu(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.positive = x > 0
        return np.where(ctx.positive, x, 0).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.positive,)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.sign = np.sign(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.sign,)


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, low, high):
        out = np.clip(x, low, high)
        ctx.inside = out == x
        return out

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.inside,)


class Maximum(Function):
    """Elementwise max; where the inputs tie, each gets half the gradient (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        share = (ctx.a > ctx.b) + 0.5 * (ctx.a == ctx.b)
        return grad * share, grad * (1 - share)


class Where(Function):
    """``where(condition, a, b)``; the condition is a bool array passed as a keyword."""

    @staticmethod
    def forward(ctx, a, b, condition):
        ctx.condition = condition
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        zero = np.zeros((), grad.dtype)
        return (np.where(ctx.condition, grad, zero) if ctx.needs_grad(0) else None,
                np.where(ctx.condition, zero, grad) if ctx.needs_grad(1) else None)


class Cast(Function):
    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return (grad.astype(ctx.dtype),)


class Gelu(Function):
    """GELU, exact (erf) or with PyTorch's tanh approximation (GPT-2's)."""

    @staticmethod
    def forward(ctx, x, approximate):
        ctx.x, ctx.approximate = x, approximate
        return kernels.gelu_forward(x, approximate=approximate)

    @staticmethod
    def backward(ctx, grad):
        return (kernels.gelu_backward(ctx.x, grad, approximate=ctx.approximate),)


class Silu(Function):
    """x · sigmoid(x) (also called swish)."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return kernels.silu_forward(x)

    @staticmethod
    def backward(ctx, grad):
        return (kernels.silu_backward(ctx.x, grad),)

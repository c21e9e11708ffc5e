"""Matrix products through BLAS, on alphagrad's threads (``kernels.matmul``)."""

from __future__ import annotations

import numpy as np

from alphagrad.autograd.function import Function
from alphagrad.tensor import kernels
from alphagrad.tensor.kernels import linear


def _swap(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _rows(x: np.ndarray) -> np.ndarray:
    """``x`` (..., K) as one (M, K) matrix."""
    return x.reshape(-1, x.shape[-1])


def _rows_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(..., K) @ (K, N) as one GEMM. NumPy runs a stacked matmul as one GEMM per batch entry
    (and a weight gradient as a batch of GEMMs summed afterwards), 1.5-1.7x slower at GPT shapes
    like (12, 64, 128) @ (128, 384)."""
    return kernels.matmul(_rows(x), w).reshape(x.shape[:-1] + (w.shape[1],))


class MatMul(Function):
    """``a @ b`` with NumPy's rules: 1-D operands are promoted, batch axes broadcast."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return _rows_matmul(a, b) if a.ndim > 2 and b.ndim == 2 else kernels.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.a, ctx.b
        if a.ndim > 2 and b.ndim == 2:
            da, db = _grads(ctx, (_rows(grad), b.T), (_rows(a).T, _rows(grad)))
            return (da.reshape(a.shape) if da is not None else None), db
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:  # b first: a 1-D @ 1-D gives a 0-d grad, which becomes (1, 1)
            grad = np.expand_dims(grad, -1)
        if a.ndim == 1:
            grad = np.expand_dims(grad, -2)
        da, db = _grads(ctx, (grad, _swap(b2)), (_swap(a2), grad))
        if da is not None and a.ndim == 1:
            da = da.reshape(da.shape[:-2] + (da.shape[-1],))
        if db is not None and b.ndim == 1:
            db = db[..., 0]
        return da, db


class Linear(Function):
    """``x @ weight.T + bias (+ residual)`` with weight (out, in), fused so each product is one
    BLAS call and the bias and a residual of the output's shape are added as it is written."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.x, ctx.weight, ctx.has_bias = x, weight, bias is not None
        return _linear(x, weight, bias, residual)

    @staticmethod
    def backward(ctx, grad):
        dbias = _rows(grad).sum(axis=0) if ctx.has_bias and ctx.needs_grad(2) else None
        return _linear_grads(ctx, grad) + (dbias, grad if ctx.needs_grad(3) else None)


class LinearGelu(Function):
    """``gelu(x @ weight.T + bias)``: the bias and the GELU in one pass over the GEMM's output,
    and backward the GELU's derivative and the bias gradient in one pass over the GEMM's input."""

    @staticmethod
    def forward(ctx, x, weight, bias, approximate):
        ctx.x, ctx.weight, ctx.has_bias, ctx.approximate = x, weight, bias is not None, approximate
        rows, shape = _rows(x), x.shape[:-1] + (weight.shape[0],)
        if _by_rows(rows, weight, bias):
            h = linear.linear_rows(rows, weight, None)
            out = kernels.bias_gelu_forward(h, bias, approximate)  # adds the bias to h
        else:
            h, out = kernels.matmul_gelu(rows, weight.T, bias, approximate)
        ctx.h = h.reshape(shape)  # the pre-activation, bias included
        return out.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        dh, dbias = kernels.bias_gelu_backward(
            ctx.h, grad, ctx.has_bias and ctx.needs_grad(2), ctx.approximate)
        return _linear_grads(ctx, dh) + (dbias,)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
            residual: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias (+ residual)`` (..., out): a few rows (a decoding step) by the row
    kernel, more by one GEMM."""
    rows = _rows(x)  # (M, in)
    if _by_rows(rows, weight, bias):
        out = linear.linear_rows(rows, weight, bias)
        out = out if residual is None else out + _rows(residual)
    else:
        out = kernels.matmul(rows, weight.T, bias, None if residual is None else _rows(residual))
    return out.reshape(x.shape[:-1] + (weight.shape[0],))


def _by_rows(rows: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> bool:
    """Whether ``rows @ weight.T`` takes the row kernel: a few rows, as in a decoding step."""
    return 0 < rows.shape[0] <= linear.MAX_ROWS and rows.dtype == weight.dtype \
        and (bias is None or bias.dtype == rows.dtype) and weight.flags.c_contiguous


def _grads(ctx, *products: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray | None]:
    """Each operand's gradient, ``a @ b`` for its (a, b) in ``products``, or None where none is
    needed; the products run side by side (``kernels.matmuls``)."""
    needed = [i for i in range(len(products)) if ctx.needs_grad(i)]
    grads: list[np.ndarray | None] = [None] * len(products)
    for i, g in zip(needed, kernels.matmuls(*(products[i] for i in needed))):
        grads[i] = g
    return grads


def _linear_grads(ctx, grad: np.ndarray) -> tuple:
    """(dx, dweight) of ``x @ weight.T`` given the output's gradient (..., out)."""
    dx, dweight = _grads(ctx, (_rows(grad), ctx.weight), (_rows(grad).T, _rows(ctx.x)))
    return (dx.reshape(ctx.x.shape) if dx is not None else None), dweight


class Einsum(Function):
    """``np.einsum`` over explicit subscripts (``subscripts``: one string per operand; ``output``);
    the functional wrapper has already spelled out ``...`` and the implicit output."""

    @staticmethod
    def forward(ctx, *operands, subscripts, output):
        ctx.operands, ctx.subscripts, ctx.output = operands, subscripts, output
        return np.asarray(np.einsum(f"{','.join(subscripts)}->{output}", *operands, optimize=True))

    @staticmethod
    def backward(ctx, grad):
        sizes = {}
        for subs, operand in zip(ctx.subscripts, ctx.operands):
            for letter, n in zip(subs, operand.shape):
                sizes[letter] = max(sizes.get(letter, 1), n)
        grads = []
        for i, subs in enumerate(ctx.subscripts):
            if not ctx.needs_grad(i):
                grads.append(None)
                continue
            others = [ctx.output] + [s for j, s in enumerate(ctx.subscripts) if j != i]
            arrays = [grad] + [a for j, a in enumerate(ctx.operands) if j != i]
            seen = set("".join(others))
            unique = "".join(dict.fromkeys(subs))
            kept = "".join(c for c in unique if c in seen)
            part = np.einsum(f"{','.join(others)}->{kept}", *arrays, optimize=True)
            # letters only this operand has were summed away: their gradient is a broadcast
            part = np.expand_dims(part, [k for k, c in enumerate(unique) if c not in seen])
            dx = np.zeros(tuple(sizes[c] for c in subs), grad.dtype)
            np.einsum(f"{subs}->{unique}", dx)[...] = part  # a writeable view (a diagonal if repeated)
            grads.append(dx)
        return tuple(grads)

"""Matrix products through BLAS (NumPy's ``@``)."""

from __future__ import annotations

import numpy as np

from alphagrad.autograd.function import Function


def _swap(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _rows(x: np.ndarray) -> np.ndarray:
    """``x`` (..., K) as one (M, K) matrix."""
    return x.reshape(-1, x.shape[-1])


def _rows_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(..., K) @ (K, N) as one GEMM. NumPy runs a stacked matmul as one GEMM per batch entry
    (and a weight gradient as a batch of GEMMs summed afterwards), 1.5-1.7x slower at GPT shapes
    like (12, 64, 128) @ (128, 384)."""
    return (_rows(x) @ w).reshape(x.shape[:-1] + (w.shape[1],))


class MatMul(Function):
    """``a @ b`` with NumPy's rules: 1-D operands are promoted, batch axes broadcast."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.a, ctx.b = a, b
        return _rows_matmul(a, b) if a.ndim > 2 and b.ndim == 2 else np.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.a, ctx.b
        if a.ndim > 2 and b.ndim == 2:
            da = _rows_matmul(grad, b.T) if ctx.needs_grad(0) else None
            db = _rows(a).T @ _rows(grad) if ctx.needs_grad(1) else None
            return da, db
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:  # b first: a 1-D @ 1-D gives a 0-d grad, which becomes (1, 1)
            grad = np.expand_dims(grad, -1)
        if a.ndim == 1:
            grad = np.expand_dims(grad, -2)
        da = db = None
        if ctx.needs_grad(0):
            da = grad @ _swap(b2)
            da = da.reshape(da.shape[:-2] + (da.shape[-1],)) if a.ndim == 1 else da
        if ctx.needs_grad(1):
            db = _swap(a2) @ grad
            db = db[..., 0] if b.ndim == 1 else db
        return da, db


class Linear(Function):
    """``x @ weight.T + bias`` with weight (out, in), fused so each product is one BLAS call."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.x, ctx.weight, ctx.has_bias = x, weight, bias is not None
        out = _rows_matmul(x, weight.T)  # (..., out)
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.x, ctx.weight
        grad2 = _rows(grad)  # (N, out)
        dx = _rows_matmul(grad, weight) if ctx.needs_grad(0) else None
        dweight = grad2.T @ _rows(x) if ctx.needs_grad(1) else None
        dbias = grad2.sum(axis=0) if ctx.has_bias and ctx.needs_grad(2) else None
        return dx, dweight, dbias

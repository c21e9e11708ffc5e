"""Reductions over axes; ``axes`` is a tuple of non-negative ints (None means all)."""

from __future__ import annotations

import numpy as np

from alphagrad.autograd.function import Function


def _restore(grad: np.ndarray, shape: tuple[int, ...], axes, keepdims: bool) -> np.ndarray:
    """Put reduced axes back as size 1 so ``grad`` broadcasts against the input."""
    if not keepdims and axes is not None:
        grad = np.expand_dims(grad, axes)
    elif not keepdims:
        grad = grad.reshape((1,) * len(shape))
    return grad


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.shape, ctx.axes, ctx.keepdims = x.shape, axes, keepdims
        return np.asarray(x.sum(axis=axes, keepdims=keepdims))

    @staticmethod
    def backward(ctx, grad):
        grad = _restore(grad, ctx.shape, ctx.axes, ctx.keepdims)
        return (np.broadcast_to(grad, ctx.shape),)


class Extremum(Function):
    """max or min over axes (``largest`` picks which); tied elements share the gradient equally."""

    @staticmethod
    def forward(ctx, x, axes, keepdims, largest):
        out = x.max(axis=axes, keepdims=True) if largest else x.min(axis=axes, keepdims=True)
        ctx.hits = x == out
        ctx.axes, ctx.keepdims = axes, keepdims
        return np.asarray(out if keepdims else np.squeeze(out, axis=axes))

    @staticmethod
    def backward(ctx, grad):
        hits = ctx.hits
        grad = _restore(grad, hits.shape, ctx.axes, ctx.keepdims)
        count = hits.sum(axis=ctx.axes, keepdims=True)
        return (hits * (grad / count).astype(grad.dtype, copy=False),)


class Norm2(Function):
    """The Euclidean norm over axes; its gradient ``x / norm`` is 0 where the norm is 0."""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        norm = np.sqrt(np.sum(x * x, axis=axes, keepdims=True))
        ctx.x, ctx.norm, ctx.axes, ctx.keepdims = x, norm, axes, keepdims
        return np.asarray(norm if keepdims else np.squeeze(norm, axis=axes))

    @staticmethod
    def backward(ctx, grad):
        grad = _restore(grad, ctx.x.shape, ctx.axes, ctx.keepdims)
        norm = ctx.norm
        scale = np.divide(grad, norm, out=np.zeros(np.broadcast_shapes(grad.shape, norm.shape), grad.dtype),
                          where=norm != 0)
        return (ctx.x * scale,)

"""Ops that move, select or join elements without arithmetic."""

from __future__ import annotations

import numpy as np

from alphagrad.autograd.function import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return (grad.reshape(ctx.shape),)


class Permute(Function):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.inverse = tuple(np.argsort(dims))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return (grad.transpose(ctx.inverse),)


class Expand(Function):
    @staticmethod
    def forward(ctx, x, shape):
        return np.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return (grad,)  # the engine sums it back to the input's shape


class Contiguous(Function):
    @staticmethod
    def forward(ctx, x):
        return np.ascontiguousarray(x)

    @staticmethod
    def backward(ctx, grad):
        return (grad,)


class GetItem(Function):
    """``x[index]`` for a NumPy-style index (ints, slices, None, Ellipsis, int or bool arrays)."""

    @staticmethod
    def forward(ctx, x, index, advanced):
        ctx.shape, ctx.dtype, ctx.index, ctx.advanced = x.shape, x.dtype, index, advanced
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        dx = np.zeros(ctx.shape, ctx.dtype)
        if ctx.advanced:
            np.add.at(dx, ctx.index, grad)  # repeated indices accumulate
        else:
            dx[ctx.index] = grad
        return (dx,)


class Gather(Function):
    """``take_along_axis``: ``out[i][j] = x[index[i][j]][j]`` along ``axis`` (as ``torch.gather``)."""

    @staticmethod
    def forward(ctx, x, index, axis):
        ctx.shape, ctx.index, ctx.axis = x.shape, index, axis
        return np.take_along_axis(x, index, axis)

    @staticmethod
    def backward(ctx, grad):
        dx = np.zeros(ctx.shape, grad.dtype)
        where = list(np.indices(ctx.index.shape, sparse=True))
        where[ctx.axis] = ctx.index
        np.add.at(dx, tuple(where), grad)  # an element picked twice gets both gradients
        return (dx,)


class Cat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis):
        ctx.axis = axis
        ctx.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.bounds, axis=ctx.axis))


class Triangle(Function):
    """Keep the lower (``tril``) or upper (``triu``) triangle of the last two axes."""

    @staticmethod
    def forward(ctx, x, diagonal, lower):
        ctx.diagonal, ctx.lower = diagonal, lower
        return np.tril(x, diagonal) if lower else np.triu(x, diagonal)

    @staticmethod
    def backward(ctx, grad):
        return (np.tril(grad, ctx.diagonal) if ctx.lower else np.triu(grad, ctx.diagonal),)


class MaskedFill(Function):
    @staticmethod
    def forward(ctx, x, mask, value):
        ctx.mask = mask
        return np.where(mask, np.asarray(value, x.dtype), x)

    @staticmethod
    def backward(ctx, grad):
        return (np.where(ctx.mask, np.zeros((), grad.dtype), grad),)

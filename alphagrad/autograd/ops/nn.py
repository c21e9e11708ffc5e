"""Fused neural-network ops whose forward and backward are Numba kernels."""

from __future__ import annotations

import itertools

import numpy as np

from alphagrad.autograd.function import Function
from alphagrad.tensor import kernels
from alphagrad.tensor.random import generator


class Softmax(Function):
    """Softmax over the last axis (callers move another axis last)."""

    @staticmethod
    def forward(ctx, x):
        ctx.out = kernels.softmax_forward(x)
        return ctx.out

    @staticmethod
    def backward(ctx, grad):
        return (kernels.softmax_backward(ctx.out, grad),)


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        out, ctx.mean, ctx.rstd = kernels.layernorm_forward(x, weight, bias, eps)
        ctx.x, ctx.weight = x, weight
        return out

    @staticmethod
    def backward(ctx, grad):
        dx, dweight, dbias = kernels.layernorm_backward(grad, ctx.x, ctx.weight, ctx.mean, ctx.rstd)
        return dx, dweight, dbias


class RMSNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        out, ctx.rstd = kernels.rmsnorm_forward(x, weight, eps)
        ctx.x, ctx.weight = x, weight
        return out

    @staticmethod
    def backward(ctx, grad):
        return kernels.rmsnorm_backward(grad, ctx.x, ctx.weight, ctx.rstd)


class RotaryEmbedding(Function):
    """Heads x (B, T, NH, hs) rotated by their positions' angles (cos, sin: (T, hs // 2))."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.cos, ctx.sin = cos, sin
        return kernels.rope_forward(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        return (kernels.rope_backward(grad, ctx.cos, ctx.sin),)


class SwiGLU(Function):
    """silu(gate) · up in one pass (Llama's MLP); x (..., 2H) holds gate then up."""

    @staticmethod
    def forward(ctx, x):
        ctx.x = x
        return kernels.swiglu_forward(x)

    @staticmethod
    def backward(ctx, grad):
        return (kernels.swiglu_backward(ctx.x, grad),)


def joined_rows(arrays) -> np.ndarray | None:
    """The 2-D ``arrays`` as one matrix stacked by rows without a copy, when they are consecutive
    rows of one C-contiguous buffer; None otherwise."""
    base, first = arrays[0].base, arrays[0]
    if not isinstance(base, np.ndarray) or not base.flags.c_contiguous or base.dtype != first.dtype:
        return None
    end = first.ctypes.data
    for a in arrays:
        if a.base is not base or a.ndim != 2 or not a.flags.c_contiguous \
                or a.shape[1] != first.shape[1] or a.ctypes.data != end:
            return None
        end += a.nbytes
    start = (first.ctypes.data - base.ctypes.data) // first.itemsize
    return base.reshape(-1)[start:start + (end - first.ctypes.data) // first.itemsize].reshape(
        -1, first.shape[1])


class CatRows(Function):
    """Matrices of one width stacked by rows, (sum of their rows, C): a view of their buffer when
    they already sit there one after another (``joined_rows``), else a copy. Either way one GEMM
    multiplies by all of them, and the gradient splits back."""

    @staticmethod
    def forward(ctx, *arrays):
        ctx.bounds = np.cumsum([a.shape[0] for a in arrays])[:-1]
        joined = joined_rows(arrays)
        return np.concatenate(arrays) if joined is None else joined

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.bounds))


class RotarySelfAttention(Function):
    """Llama's attention from its fused projection qkv (B, T, NH + 2·NKV, hs) to (B, T, NH·hs):
    q and k rotated (cos, sin: (T, hs // 2)) into one new buffer with v beside them, attention
    reading its heads as strided views, and backward writing d(qkv) in place, rotated back."""

    @staticmethod
    def forward(ctx, qkv, cos, sin, n_head, n_kv_head, scale):
        B, T = qkv.shape[:2]
        rotated = kernels.rope_forward(qkv, cos, sin, heads=n_head + n_kv_head)
        q, k, v = _heads(rotated, n_head, n_kv_head)
        out, ctx.lse = kernels.attention_forward(q, k, v, scale)  # (B, NH, T, hs), a view
        ctx.rotated, ctx.out, ctx.cos, ctx.sin = rotated, out, cos, sin
        ctx.n_head, ctx.n_kv_head, ctx.scale = n_head, n_kv_head, scale
        return out.transpose(0, 2, 1, 3).reshape(B, T, -1)

    @staticmethod
    def backward(ctx, grad):
        NH, NKV = ctx.n_head, ctx.n_kv_head
        B, T, _, hs = ctx.rotated.shape
        dout = grad.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        dqkv = np.empty_like(ctx.rotated)
        dq, dk, dv = _heads(dqkv, NH, NKV)
        q, k, v = _heads(ctx.rotated, NH, NKV)
        kernels.attention_backward(dout, q, k, v, ctx.out, ctx.lse, ctx.scale, dq=dq, dk=dk, dv=dv)
        kernels.rope_backward(dqkv, ctx.cos, ctx.sin, heads=NH + NKV, out=dqkv)
        return (dqkv,)


def _heads(qkv: np.ndarray, n_head: int, n_kv_head: int) -> tuple[np.ndarray, ...]:
    """Views q (B, NH, T, hs), k and v (B, NKV, T, hs) into a (B, T, NH + 2·NKV, hs) buffer."""
    bounds = (0, n_head, n_head + n_kv_head, n_head + 2 * n_kv_head)
    return tuple(qkv[:, :, a:b].transpose(0, 2, 1, 3) for a, b in itertools.pairwise(bounds))


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood over logits (N, V) and int targets (N,)."""

    @staticmethod
    def forward(ctx, logits, targets, ignore_index, reduction, label_smoothing):
        losses, ctx.lse = kernels.cross_entropy_forward(logits, targets, ignore_index, label_smoothing)
        ctx.logits, ctx.targets, ctx.reduction = logits, targets, reduction
        ctx.ignore_index, ctx.label_smoothing = ignore_index, label_smoothing
        if reduction == "none":
            return losses
        if reduction == "sum":
            return np.asarray(losses.sum(), losses.dtype)
        ctx.count = int(np.count_nonzero(targets != ignore_index))
        return np.asarray(losses.sum() / ctx.count if ctx.count else np.nan, losses.dtype)

    @staticmethod
    def backward(ctx, grad):
        n = ctx.logits.shape[0]
        if ctx.reduction == "none":
            dlosses = np.ascontiguousarray(grad, ctx.logits.dtype)
        else:
            scale = grad / ctx.count if ctx.reduction == "mean" else grad
            dlosses = np.full(n, scale, ctx.logits.dtype)
        dlogits = kernels.cross_entropy_backward(
            ctx.logits, ctx.targets, ctx.lse, dlosses, ctx.ignore_index, ctx.label_smoothing
        )
        return dlogits, None


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, idx):
        ctx.idx, ctx.num_embeddings = idx, weight.shape[0]
        return kernels.embedding_forward(weight, idx)

    @staticmethod
    def backward(ctx, grad):
        return kernels.embedding_backward(grad, ctx.idx, ctx.num_embeddings), None


class Dropout(Function):
    """Zero each element with probability p and scale the rest by 1/(1-p)."""

    @staticmethod
    def forward(ctx, x, p):
        keep = generator().random(x.shape, dtype=np.float32) >= p
        ctx.mask = keep * np.asarray(1.0 / (1.0 - p), x.dtype)
        return x * ctx.mask

    @staticmethod
    def backward(ctx, grad):
        return (grad * ctx.mask,)


class CausalAttention(Function):
    """softmax(q kᵀ · scale + causal mask) v in one fused kernel; q is (B, NH, Tq, hs), k and v
    (B, NKV, Tk, hs) with NKV dividing NH (grouped-query attention when fewer)."""

    @staticmethod
    def forward(ctx, q, k, v, scale):
        out, ctx.lse = kernels.attention_forward(q, k, v, scale)
        ctx.q, ctx.k, ctx.v, ctx.out, ctx.scale = q, k, v, out, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        return kernels.attention_backward(grad, ctx.q, ctx.k, ctx.v, ctx.out, ctx.lse, ctx.scale)


def _split_heads(qkv: np.ndarray, n_head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views q, k, v (B, NH, T, hs) into a (B, T, 3·C) buffer, without copying."""
    B, T, C3 = qkv.shape
    heads = qkv.reshape(B, T, 3, n_head, C3 // (3 * n_head))
    return tuple(heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


class FusedSelfAttention(Function):
    """Causal self-attention straight from the fused projection qkv (B, T, 3·C) to (B, T, C).

    Reads q, k, v as strided views and writes d(qkv) in place, so neither direction copies
    heads around: the GPT's attention in one op.
    """

    @staticmethod
    def forward(ctx, qkv, n_head, scale):
        B, T, C3 = qkv.shape
        q, k, v = _split_heads(qkv, n_head)
        out, ctx.lse = kernels.attention_forward(q, k, v, scale)  # out (B, NH, T, hs), a view
        ctx.qkv, ctx.n_head, ctx.out, ctx.scale = qkv, n_head, out, scale
        return out.transpose(0, 2, 1, 3).reshape(B, T, C3 // 3)

    @staticmethod
    def backward(ctx, grad):
        B, T, _ = ctx.qkv.shape
        dout = grad.reshape(B, T, ctx.n_head, -1).transpose(0, 2, 1, 3)
        dqkv = np.empty_like(ctx.qkv)
        dq, dk, dv = _split_heads(dqkv, ctx.n_head)
        q, k, v = _split_heads(ctx.qkv, ctx.n_head)
        kernels.attention_backward(dout, q, k, v, ctx.out, ctx.lse, ctx.scale, dq=dq, dk=dk, dv=dv)
        return (dqkv,)

"""Plain-NumPy references for the Numba kernels, written from the math and kept slow on purpose.

Tests compare every kernel against the function of the same name here.
"""

from __future__ import annotations

import math

import numpy as np


def _shared_heads(q: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """Key/value heads (B, NKV, Tk, hs) repeated to q's NH heads: query head h reads kv head
    h // (NH // NKV)."""
    return np.repeat(kv, q.shape[1] // kv.shape[1], axis=1)


def _summed_heads(grad: np.ndarray, kv: np.ndarray) -> np.ndarray:
    """A (B, NH, Tk, hs) gradient summed over the query heads that share each kv head."""
    B, NKV, Tk, hs = kv.shape
    return grad.reshape(B, NKV, -1, Tk, hs).sum(axis=2)


def _causal_scores(q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """Scaled scores (B, NH, Tq, Tk) with -inf where query i may not see key j > i + Tk - Tq."""
    Tq, Tk = q.shape[-2], k.shape[-2]
    scores = (q @ _shared_heads(q, k).swapaxes(-1, -2)) * q.dtype.type(scale)  # (B, NH, Tq, Tk)
    hidden = np.arange(Tk)[None, :] > np.arange(Tq)[:, None] + (Tk - Tq)  # (Tq, Tk)
    return np.where(hidden, -np.inf, scores).astype(q.dtype)


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float):
    """Causal softmax(q kᵀ · scale) v and the row log-sum-exp of the scaled scores; k and v
    may have fewer heads than q (grouped-query attention)."""
    scores = _causal_scores(q, k, scale)
    row_max = scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores - row_max)
    row_sum = weights.sum(axis=-1, keepdims=True)
    out = (weights / row_sum) @ _shared_heads(q, v)  # (B, NH, Tq, hs)
    lse = (row_max + np.log(row_sum))[..., 0]  # (B, NH, Tq)
    return out.astype(q.dtype), lse.astype(q.dtype)


def attention_backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float):
    """Gradients (dq, dk, dv) of the causal attention above, recomputed from scratch."""
    scores = _causal_scores(q, k, scale)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, NH, Tq, Tk)
    dv = _summed_heads(probs.swapaxes(-1, -2) @ dout, v)
    dprobs = dout @ _shared_heads(q, v).swapaxes(-1, -2)
    # softmax backward: dS = P * (dP - rowsum(dP * P))
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True)) * scale
    dq = dscores @ _shared_heads(q, k)
    dk = _summed_heads(dscores.swapaxes(-1, -2) @ q, k)
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)


def linear_rows(x: np.ndarray, weight: np.ndarray, bias=None) -> np.ndarray:
    """x @ weightᵀ + bias."""
    return x @ weight.T + (0 if bias is None else bias)


def slot_attention(q, keys, values, token_slot, token_pos, scale: float) -> np.ndarray:
    """Each query token i against the keys of its own slot up to its position, one at a time."""
    NH, N, _ = q.shape
    group = NH // keys.shape[1]
    out = np.empty_like(q)
    for h in range(NH):
        for i in range(N):
            k = keys[token_slot[i], h // group, :token_pos[i] + 1]  # (L, hs)
            v = values[token_slot[i], h // group, :token_pos[i] + 1]
            scores = k @ q[h, i] * scale
            weights = np.exp(scores - scores.max())
            out[h, i] = weights / weights.sum() @ v
    return out


def gelu_forward(x: np.ndarray, approximate: str = "tanh") -> np.ndarray:
    """0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))), or x·Φ(x) for ``approximate="none"``."""
    if approximate == "none":
        return (x * _normal_cdf(x)).astype(x.dtype)
    u = np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)
    return (0.5 * x * (1.0 + np.tanh(u))).astype(x.dtype)


def gelu_backward(x: np.ndarray, dout: np.ndarray, approximate: str = "tanh") -> np.ndarray:
    """dout · d/dx of the GELU above (product and chain rules; Φ' is the normal density)."""
    if approximate == "none":
        density = np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)
        return (dout * (_normal_cdf(x) + x * density)).astype(x.dtype)
    t = np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))
    du = np.sqrt(2.0 / np.pi) * (1.0 + 3 * 0.044715 * x**2)
    return (dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du)).astype(x.dtype)


def bias_gelu_forward(h: np.ndarray, bias: np.ndarray | None,
                      approximate: str = "tanh") -> tuple[np.ndarray, np.ndarray]:
    """(gelu(h + bias), h + bias): the kernel returns the first and leaves the second in h."""
    pre = h if bias is None else (h + bias).astype(h.dtype)
    return gelu_forward(pre, approximate), pre


def bias_gelu_backward(h: np.ndarray, dout: np.ndarray, has_bias: bool,
                       approximate: str = "tanh") -> tuple[np.ndarray, np.ndarray | None]:
    """(dh, dbias) at the pre-activation h: dbias sums dh over every axis but the last."""
    dh = gelu_backward(h, dout, approximate)
    return dh, dh.reshape(-1, h.shape[-1]).sum(axis=0) if has_bias else None


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) = (1 + erf(x/√2)) / 2, with erf from the standard library (NumPy has none)."""
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + erf(np.asarray(x, np.float64) / math.sqrt(2.0)).astype(np.float64))


def softmax_forward(x: np.ndarray) -> np.ndarray:
    """exp(x) / sum(exp(x)) over the last axis, shifted by the row max."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def softmax_backward(out: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """The softmax Jacobian (diag(s) - s sᵀ) applied to dout: s · (dout - <s, dout>) per row."""
    return (out * (dout - (out * dout).sum(axis=-1, keepdims=True))).astype(out.dtype)


def layernorm_forward(x: np.ndarray, weight, bias, eps: float = 1e-5):
    """(x - mean) / sqrt(var + eps) · weight + bias over the last axis; also mean and rstd."""
    mean = x.mean(axis=-1)
    rstd = 1.0 / np.sqrt(x.var(axis=-1) + eps)
    out = (x - mean[..., None]) * rstd[..., None]
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out.astype(x.dtype), mean.astype(x.dtype), rstd.astype(x.dtype)


def layernorm_backward(dout: np.ndarray, x: np.ndarray, weight, mean: np.ndarray, rstd):
    """(dx, dweight, dbias): the normalisation's Jacobian applied to dout · weight, per row."""
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dout * weight if weight is not None else dout
    # d xhat_j / d x_k = rstd · (δjk - 1/C - xhat_j xhat_k / C), summed against g over j
    dx = rstd[..., None] * (
        g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    )
    dx = dx.astype(x.dtype)
    if weight is None:
        return dx, None, None
    lead = tuple(range(x.ndim - 1))
    return dx, (dout * xhat).sum(axis=lead).astype(x.dtype), dout.sum(axis=lead).astype(x.dtype)


def rmsnorm_forward(x: np.ndarray, weight, eps: float = 1e-6):
    """x / sqrt(mean(x²) + eps) · weight over the last axis; also rstd."""
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1) + eps)
    out = x * rstd[..., None]
    if weight is not None:
        out = out * weight
    return out.astype(x.dtype), rstd.astype(x.dtype)


def rmsnorm_backward(dout: np.ndarray, x: np.ndarray, weight, rstd: np.ndarray):
    """(dx, dweight): d(x·r)/dx with r = (mean(x²) + eps)^-½, so dr/dx_k = −r³·x_k / C."""
    g = dout * weight if weight is not None else dout
    r = rstd[..., None]
    dx = (g * r - x * r**3 * (g * x).mean(axis=-1, keepdims=True)).astype(x.dtype)
    if weight is None:
        return dx, None
    lead = tuple(range(x.ndim - 1))
    return dx, (dout * x * r).sum(axis=lead).astype(x.dtype)


def rope_forward(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Hugging Face's rotate_half form: x·[cos, cos] + [−x2, x1]·[sin, sin], heads (B, T, NH, hs)."""
    half = x.shape[-1] // 2
    cos2 = np.concatenate([cos, cos], axis=-1)[None, :, None, :]  # (1, T, 1, hs)
    sin2 = np.concatenate([sin, sin], axis=-1)[None, :, None, :]
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos2 + rotated * sin2).astype(x.dtype)


def rope_backward(dout: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """The transpose of rope_forward's per-pair rotation matrix applied to dout."""
    half = dout.shape[-1] // 2
    d1, d2 = dout[..., :half], dout[..., half:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return np.concatenate([d1 * c + d2 * s, d2 * c - d1 * s], axis=-1).astype(dout.dtype)


def silu_forward(x: np.ndarray) -> np.ndarray:
    """x · sigmoid(x)."""
    return (x / (1.0 + np.exp(-x))).astype(x.dtype)


def silu_backward(x: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """dout · (sigmoid(x) + x · sigmoid(x) · (1 − sigmoid(x)))."""
    s = 1.0 / (1.0 + np.exp(-x))
    return (dout * (s + x * s * (1.0 - s))).astype(x.dtype)


def swiglu_forward(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """silu(gate) · up."""
    return (silu_forward(gate) * up).astype(gate.dtype)


def swiglu_backward(gate: np.ndarray, up: np.ndarray, dout: np.ndarray):
    """(dgate, dup) by the product rule."""
    return silu_backward(gate, dout * up), (dout * silu_forward(gate)).astype(gate.dtype)


def cross_entropy_forward(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """Per-row -log softmax(x)[t], mixed with the mean over classes by label smoothing; lse."""
    lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1))
    lse += logits.max(axis=1)
    logp = logits - lse[:, None]  # (N, V)
    kept = targets != ignore_index
    nll = -logp[np.arange(len(targets)), np.where(kept, targets, 0)]
    losses = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    return np.where(kept, losses, 0.0).astype(logits.dtype), lse.astype(logits.dtype)


def cross_entropy_backward(logits, targets, lse, dlosses, ignore_index=-100,
                           label_smoothing=0.0):
    """(softmax(x) - ((1 - eps)·onehot(t) + eps/V)) · dloss per row; zero for ignored rows."""
    N, V = logits.shape
    kept = targets != ignore_index
    target = np.full((N, V), label_smoothing / V)
    target[np.arange(N)[kept], targets[kept]] += 1 - label_smoothing
    probs = np.exp(logits - lse[:, None])
    dlogits = (probs - target) * np.where(kept, dlosses, 0.0)[:, None]
    return dlogits.astype(logits.dtype)


def embedding_forward(weight: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The rows of weight picked by idx."""
    return weight[idx]


def embedding_backward(dout: np.ndarray, idx: np.ndarray, num_embeddings: int) -> np.ndarray:
    """Row v sums dout over the positions holding id v (unbuffered, so repeats all count)."""
    dweight = np.zeros((num_embeddings, dout.shape[-1]), dout.dtype)
    np.add.at(dweight, idx.reshape(-1), dout.reshape(idx.size, -1))
    return dweight


def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    """AdamW in place (decoupled decay, then Adam with bias corrections), as PyTorch does it."""
    param *= 1 - lr * weight_decay
    exp_avg[:] = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq[:] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = exp_avg / (1 - beta1**step)
    v_hat = exp_avg_sq / (1 - beta2**step)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)

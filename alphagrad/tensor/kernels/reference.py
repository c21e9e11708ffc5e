"""Plain-NumPy references for the Numba kernels, written from the math and kept slow on purpose.

Tests compare every kernel against the function of the same name here.
"""

from __future__ import annotations

import numpy as np


def _causal_scores(q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """Scaled scores (B, NH, Tq, Tk) with -inf where query i may not see key j > i + Tk - Tq."""
    Tq, Tk = q.shape[-2], k.shape[-2]
    scores = (q @ k.swapaxes(-1, -2)) * q.dtype.type(scale)  # (B, NH, Tq, Tk)
    hidden = np.arange(Tk)[None, :] > np.arange(Tq)[:, None] + (Tk - Tq)  # (Tq, Tk)
    return np.where(hidden, -np.inf, scores).astype(q.dtype)


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float):
    """Causal softmax(q kᵀ · scale) v and the row log-sum-exp of the scaled scores."""
    scores = _causal_scores(q, k, scale)
    row_max = scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores - row_max)
    row_sum = weights.sum(axis=-1, keepdims=True)
    out = (weights / row_sum) @ v  # (B, NH, Tq, hs)
    lse = (row_max + np.log(row_sum))[..., 0]  # (B, NH, Tq)
    return out.astype(q.dtype), lse.astype(q.dtype)


def attention_backward(dout: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float):
    """Gradients (dq, dk, dv) of the causal attention above, recomputed from scratch."""
    scores = _causal_scores(q, k, scale)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, NH, Tq, Tk)
    dv = probs.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    # softmax backward: dS = P * (dP - rowsum(dP * P))
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True)) * scale
    dq = dscores @ k
    dk = dscores.swapaxes(-1, -2) @ q
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)

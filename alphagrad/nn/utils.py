"""Gradient utilities for training loops."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from alphagrad.autograd.tensor import Tensor


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0
) -> Tensor:
    """Scale all gradients in place so their joint ``norm_type`` norm is at most ``max_norm``;
    return the norm before clipping as a 0-d tensor, float32 unless a gradient is float64 (as
    ``torch.nn.utils.clip_grad_norm_``; ``float(norm)`` or ``norm.item()`` gives the number).

        >>> norm = clip_grad_norm_(model.parameters(), 1.0)
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0)
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads))  # BLAS, one pass
    else:
        total = sum(float(np.sum(np.abs(g) ** norm_type)) for g in grads) ** (1.0 / norm_type)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return Tensor(total, dtype=np.float32 if all(g.dtype == np.float32 for g in grads) else np.float64)

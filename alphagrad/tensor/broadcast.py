"""Broadcasting helpers shared by every op: the forward shape rule and its gradient."""

from __future__ import annotations

import numpy as np


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape NumPy broadcasting gives ``shapes``; raises a ValueError naming them all."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"shapes {listed} cannot be broadcast together") from None


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes broadcasting added or stretched, so it has ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)

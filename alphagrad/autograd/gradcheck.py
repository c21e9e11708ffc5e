"""Compare backward() against central finite differences, in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from alphagrad.autograd.grad_mode import no_grad
from alphagrad.autograd.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree; the message names the worst element."""


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check ``fn``'s gradients with respect to every input that requires grad.

    The output is contracted with a fixed random tensor ``v``, so one backward pass gives
    the vector-Jacobian product that is compared, element by element, with central
    differences of ``sum(fn(*inputs) * v)``. Inputs must be float64. Returns True or raises
    ``GradcheckError`` naming the input, the index, and both values.

        >>> x = ag.randn(3, 4, dtype="float64", requires_grad=True)
        >>> gradcheck(lambda x: (x * x).sum(dim=1), [x])
        True
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {t.dtype}; finite differences need float64")
    out = fn(*inputs)
    v = np.random.default_rng(seed).standard_normal(out.shape)
    for t in inputs:
        t.grad = None
    out.backward(v)

    def objective() -> float:
        with no_grad():
            return float(np.sum(fn(*inputs).data * v))

    worst = None
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.data
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)  # a view: the perturbation reaches fn
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            minus = objective()
            flat[j] = original
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if excess.size and (worst is None or excess.max() > worst[0]):
            j = int(np.argmax(excess))
            index = np.unravel_index(j, t.shape)
            worst = (excess.max(), i, index, analytic.reshape(-1)[j], numeric.reshape(-1)[j])
    if worst is not None and worst[0] > 0:
        _, i, index, a, n = worst
        raise GradcheckError(
            f"gradcheck: input {i} at index {tuple(int(k) for k in index)}: analytic {a:.8g} vs "
            f"numeric {n:.8g} (atol={atol}, rtol={rtol})"
        )
    return True

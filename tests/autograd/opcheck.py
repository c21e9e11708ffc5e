"""``check_op``: one harness for every differentiable op (tinygrad's habit).

The forward runs in float64 and float32 and is compared with a plain-NumPy computation, each
dtype with its own tolerance; the gradients are checked against finite differences in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import alphagrad as ag


def check_op(
    ag_fn: Callable,
    np_fn: Callable,
    arrays: list[np.ndarray],
    *,
    atol: float = 1e-10,
    rtol: float = 1e-7,
    atol32: float = 1e-4,
    rtol32: float = 1e-4,
    grad: bool = True,
    grad_atol: float = 1e-5,
    grad_rtol: float = 1e-3,
) -> None:
    """``ag_fn(*tensors)`` must equal ``np_fn(*arrays)`` and have gradcheck-exact gradients."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    want = np_fn(*arrays)
    for dtype, a_tol, r_tol in ((np.float64, atol, rtol), (np.float32, atol32, rtol32)):
        out = ag_fn(*[ag.tensor(a, dtype=dtype) for a in arrays])
        assert out.dtype == dtype, f"{dtype.__name__} inputs gave a {out.dtype} output"
        assert out.shape == np.shape(want), f"shape {out.shape}, NumPy gives {np.shape(want)}"
        np.testing.assert_allclose(
            out.data, want, rtol=r_tol, atol=a_tol, err_msg=f"forward ({dtype.__name__})"
        )
    if grad:
        inputs = [ag.tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
        assert ag.gradcheck(ag_fn, inputs, atol=grad_atol, rtol=grad_rtol)
        for t in inputs:
            assert t.grad is None or (t.grad.shape == t.shape and t.grad.dtype == np.float64)


def away_from(x: np.ndarray, points, gap: float = 0.05) -> np.ndarray:
    """``x`` with every value within ``gap`` of a kink moved past it, so finite differences hold."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap) * 2
    return x


def distinct(rng: np.random.Generator, shape) -> np.ndarray:
    """Values at least 0.1 apart in a random order: max/min never tie."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 - 0.05 * n + rng.uniform(0, 0.01, n)).reshape(shape)

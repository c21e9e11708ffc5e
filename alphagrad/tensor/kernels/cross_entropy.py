"""Cross-entropy fused with its softmax: per-row losses and log-sum-exp, and the logits' gradient.

With label smoothing eps the target distribution is (1 - eps)·onehot(t) + eps/V (PyTorch's), so
loss = (1 - eps)·(lse - x[t]) + eps·(lse - mean(x)) and dlogits = softmax(x) - that distribution.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array, index_array, output, same_shape
from alphagrad.tensor.kernels._exp import fast_exp
from alphagrad.tensor.kernels._maxnum import maxnum
from alphagrad.tensor.kernels._serial import PARALLEL_MIN_SIZE, serial_twin, use_parallel


@kernel(parallel=True)
def _cross_entropy_forward(logits, targets, ignore_index, smoothing, losses, lse):
    # logits: (N, V); targets: (N,); saves lse: (N,) for the backward; losses: (N,)
    N, V = logits.shape
    zero, one, inv_v = logits.dtype.type(0.0), logits.dtype.type(1.0), logits.dtype.type(1.0 / V)
    for i in prange(N):
        row_max = logits.dtype.type(-np.inf)
        for j in range(V):  # alone: LLVM does not vectorise this loop with a sum beside it
            row_max = maxnum(row_max, logits[i, j])
        sum_exp = zero
        for j in range(V):
            sum_exp += fast_exp(logits[i, j] - row_max)
        row_lse = row_max + math.log(sum_exp)
        lse[i] = row_lse
        t = targets[i]
        if t == ignore_index:
            losses[i] = zero
        else:
            loss = row_lse - logits[i, t]
            if smoothing != zero:
                total = zero
                for j in range(V):
                    total += logits[i, j]
                loss = (one - smoothing) * loss + smoothing * (row_lse - total * inv_v)
            losses[i] = loss


@kernel(parallel=True)
def _cross_entropy_backward(logits, targets, lse, dlosses, ignore_index, smoothing, dlogits):
    # logits, dlogits: (N, V); targets, lse, dlosses: (N,); one pass per row
    N, V = logits.shape
    uniform = logits.dtype.type(smoothing / V)
    one = logits.dtype.type(1.0)
    for i in prange(N):
        t = targets[i]
        if t == ignore_index:
            for j in range(V):
                dlogits[i, j] = 0
            continue
        g = dlosses[i]
        row_lse = lse[i]
        for j in range(V):
            dlogits[i, j] = (fast_exp(logits[i, j] - row_lse) - uniform) * g
        dlogits[i, t] -= (one - smoothing) * g


_cross_entropy_forward_serial = serial_twin(_cross_entropy_forward)
_cross_entropy_backward_serial = serial_twin(_cross_entropy_backward)


@kernel()
def _first_bad_target(targets, V, ignore_index):
    # one pass instead of NumPy's several temporaries: this check runs on every call
    for i in range(targets.size):
        t = targets[i]
        if (t < 0 or t >= V) and t != ignore_index:
            return i
    return -1


def cross_entropy_forward(
    logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row cross-entropy of ``logits`` (N, V) against class ids ``targets`` (N,).

    Returns ``(losses, lse)``, both (N,): the loss of each row (0 where the target is
    ``ignore_index``) and the row's log-sum-exp, which ``cross_entropy_backward`` reuses.

    >>> losses, lse = cross_entropy_forward(np.zeros((1, 4)), np.array([2]))
    >>> losses  # log(4)
    array([1.38629436])
    """
    op = "cross_entropy_forward"
    logits, targets = _check(op, logits, targets, ignore_index, label_smoothing)
    losses = np.empty(targets.shape, logits.dtype)
    lse = np.empty(targets.shape, logits.dtype)
    run = _cross_entropy_forward if use_parallel(logits.size, PARALLEL_MIN_SIZE) else \
        _cross_entropy_forward_serial
    run(
        logits, targets, ignore_index, logits.dtype.type(label_smoothing), losses, lse
    )
    return losses, lse


def cross_entropy_backward(
    logits: np.ndarray, targets: np.ndarray, lse: np.ndarray, dlosses: np.ndarray,
    ignore_index: int = -100, label_smoothing: float = 0.0, out: np.ndarray | None = None,
) -> np.ndarray:
    """Gradient (N, V) of the per-row losses given their upstream gradient ``dlosses`` (N,).

    ``lse`` is the forward's log-sum-exp; for a mean over the counted rows pass
    ``dlosses = g / count``. Rows whose target is ``ignore_index`` get a zero gradient.
    """
    op = "cross_entropy_backward"
    logits, targets = _check(op, logits, targets, ignore_index, label_smoothing)
    lse = float_array(op, "lse", lse, logits.dtype)
    dlosses = float_array(op, "dlosses", dlosses, logits.dtype)
    same_shape(op, "lse", lse, targets.shape)
    same_shape(op, "dlosses", dlosses, targets.shape)
    dlogits = output(op, out, logits.shape, logits.dtype)
    run = _cross_entropy_backward if use_parallel(logits.size, PARALLEL_MIN_SIZE) else \
        _cross_entropy_backward_serial
    run(
        logits, targets, lse, dlosses, ignore_index, logits.dtype.type(label_smoothing), dlogits
    )
    return dlogits


def _check(op: str, logits, targets, ignore_index: int, label_smoothing: float):
    logits = float_array(op, "logits", logits)
    targets = index_array(op, "targets", targets)
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"{op}: logits must have shape (N, V) with V >= 1, got {logits.shape}")
    same_shape(op, "targets", targets, logits.shape[:1])
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    V = logits.shape[1]
    row = _first_bad_target(targets, V, ignore_index)
    if row >= 0:
        raise IndexError(
            f"{op}: target {int(targets[row])} in row {row} is out of range for V={V} "
            f"(and is not ignore_index={ignore_index})"
        )
    return logits, targets

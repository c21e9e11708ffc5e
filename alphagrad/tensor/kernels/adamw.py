"""AdamW steps over flat buffers, in place, with PyTorch's semantics (decoupled weight decay).

``adamw_steps`` updates every tensor of a parameter group in one kernel call, as PyTorch's
fused AdamW does: one call per tensor cost 8 µs each in Python and dispatch, more than the
arithmetic of most of a small GPT's 28 tensors. The tensors arrive as a table of addresses
(``_address``), and each thread takes an equal share of all their elements together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._address import address, flat_at
from alphagrad.tensor.kernels._checks import float_array
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel
from alphagrad.tensor.threads import get_num_threads

# A square root and a division per element: two threads pay off from ~16k elements (measured:
# 8192 took 6.5 µs on one thread and 7.1 on two, 16384 took 8.8 and 8.1).
PARALLEL_MIN_SIZE = 1 << 14
# Columns of _adamw_steps's table, one row per tensor: the byte addresses of its four buffers,
# its length, and where its elements start in the run of all the tensors' elements.
PARAM, GRAD, EXP_AVG, EXP_AVG_SQ, SIZE, START = range(6)
# Columns of the per-tensor factors: 1 - lr·weight_decay, lr / (1 - beta1**step) and
# sqrt(1 - beta2**step), which differ between tensors only through their step counts.
DECAY, STEP_SIZE, SQRT_BC2 = range(3)


@kernel(parallel=True)
def _adamw_steps(tensors, factors, beta1, beta2, eps, shares):
    # Share s of `shares` updates elements [s·N/shares, (s+1)·N/shares) of the run of all N
    # elements, across tensor boundaries. Indices are unsigned: Numba would check a signed one
    # for wraparound, which keeps LLVM from vectorising (a step 7x slower).
    one = factors.dtype.type(1.0)
    total = tensors[-1, START] + tensors[-1, SIZE]
    for s in prange(shares):
        lo, hi = s * total // shares, (s + 1) * total // shares
        for t in range(tensors.shape[0]):
            start, size = tensors[t, START], tensors[t, SIZE]
            first, last = max(lo, start) - start, min(hi, start + size) - start
            if first >= last:
                continue
            param = flat_at(tensors[t, PARAM], size, one)
            grad = flat_at(tensors[t, GRAD], size, one)
            exp_avg = flat_at(tensors[t, EXP_AVG], size, one)
            exp_avg_sq = flat_at(tensors[t, EXP_AVG_SQ], size, one)
            decay, step_size, sqrt_bc2 = factors[t, DECAY], factors[t, STEP_SIZE], \
                factors[t, SQRT_BC2]
            for j in range(first, last):
                i = np.uint64(j)
                g = grad[i]
                m = exp_avg[i] + (one - beta1) * (g - exp_avg[i])
                v = beta2 * exp_avg_sq[i] + (one - beta2) * g * g
                exp_avg[i] = m
                exp_avg_sq[i] = v
                param[i] = param[i] * decay - step_size * (m / (math.sqrt(v) / sqrt_bc2 + eps))


_adamw_steps_serial = serial_twin(_adamw_steps)


def adamw_steps(
    params: Sequence[np.ndarray], grads: Sequence[np.ndarray], exp_avgs: Sequence[np.ndarray],
    exp_avg_sqs: Sequence[np.ndarray], steps: Sequence[int], lr: float, beta1: float,
    beta2: float, eps: float, weight_decay: float,
) -> None:
    """``adamw_step`` for each tensor i on (params[i], grads[i], exp_avgs[i], exp_avg_sqs[i])
    at step ``steps[i]``, all of one float dtype, in one kernel call."""
    op = "adamw_steps"
    if not (len(params) == len(grads) == len(exp_avgs) == len(exp_avg_sqs) == len(steps)):
        raise ValueError(f"{op}: params, grads, exp_avgs, exp_avg_sqs and steps need one entry "
                         "per tensor")
    if not params:
        return
    dtype = params[0].dtype if isinstance(params[0], np.ndarray) else None
    rows, start = [], 0
    for buffers, step in zip(zip(params, grads, exp_avgs, exp_avg_sqs), steps):
        shape = buffers[0].shape if isinstance(buffers[0], np.ndarray) else None
        if not all(isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape
                   and a.flags.c_contiguous for a in buffers) or len(shape) != 1:
            _refuse(op, buffers, dtype)
        if not (isinstance(step, (int, np.integer)) and step >= 1):
            raise ValueError(f"{op}: step counts from 1, got {step!r}")
        rows.append((*map(address, buffers), shape[0], start))
        start += shape[0]
    step = np.array(steps, np.float64)
    factors = np.stack([np.full_like(step, 1.0 - lr * weight_decay), lr / (1.0 - beta1**step),
                        np.sqrt(1.0 - beta2**step)], axis=1).astype(dtype)
    parallel = use_parallel(start, PARALLEL_MIN_SIZE)
    t = dtype.type
    (_adamw_steps if parallel else _adamw_steps_serial)(
        np.array(rows, np.int64), factors, t(beta1), t(beta2), t(eps),
        get_num_threads() if parallel else 1)


def _refuse(op: str, buffers: tuple, dtype: np.dtype | None) -> None:
    """Raise the error that names what is wrong with one tensor's four buffers."""
    for name, a in zip(("param", "grad", "exp_avg", "exp_avg_sq"), buffers):
        float_array(op, name, a, dtype)
        if a.ndim != 1 or a.shape != buffers[0].shape:
            raise ValueError(f"{op}: {name} has shape {a.shape}, expected 1-D like param")
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be C-contiguous: the step works in place")


def adamw_step(
    param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, step: int,
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
) -> None:
    """Update ``param``, ``exp_avg`` and ``exp_avg_sq`` in place for AdamW step ``step`` (from 1).

    All four are 1-D C-contiguous buffers of one float dtype and equal length, as
    ``torch.optim.AdamW`` keeps them: ``p *= 1 - lr·wd``, then the moments, then
    ``p -= lr / (1 - beta1**step) · m / (sqrt(v) / sqrt(1 - beta2**step) + eps)``.

    >>> p, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    >>> adamw_step(p, np.array([0.5, -2.0]), m, v, 1, 0.1, 0.9, 0.999, 1e-8, 0.0)
    >>> p.round(6)  # the first step moves each weight by lr against its gradient's sign
    array([0.9, 1.1])
    """
    adamw_steps([param], [grad], [exp_avg], [exp_avg_sq], [step], lr, beta1, beta2, eps,
                weight_decay)

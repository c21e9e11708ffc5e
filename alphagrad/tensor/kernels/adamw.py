"""One AdamW step over flat buffers, in place, with PyTorch's semantics (decoupled weight decay)."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from alphagrad._jit import kernel
from alphagrad.tensor.kernels._checks import float_array
from alphagrad.tensor.kernels._serial import serial_twin, use_parallel

# A square root and a division per element: two threads pay off from ~16k elements (measured:
# 8192 took 6.5 µs on one thread and 7.1 on two, 16384 took 8.8 and 8.1).
PARALLEL_MIN_SIZE = 1 << 14


@kernel(parallel=True)
def _adamw_step(param, grad, exp_avg, exp_avg_sq, decay, beta1, beta2, step_size, sqrt_bc2, eps):
    # param, grad, exp_avg, exp_avg_sq: (n,), updated in place; decay = 1 - lr * weight_decay
    one = param.dtype.type(1.0)
    for i in prange(param.size):
        g = grad[i]
        m = exp_avg[i] + (one - beta1) * (g - exp_avg[i])
        v = beta2 * exp_avg_sq[i] + (one - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = param[i] * decay - step_size * (m / (math.sqrt(v) / sqrt_bc2 + eps))


_adamw_step_serial = serial_twin(_adamw_step)


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
    op = "adamw_step"
    dtype = param.dtype if isinstance(param, np.ndarray) else None
    buffers = {"param": param, "grad": grad, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    for name, a in buffers.items():
        float_array(op, name, a, dtype)
        if a.ndim != 1 or a.shape != param.shape:
            raise ValueError(f"{op}: {name} has shape {a.shape}, expected 1-D like param")
        if not a.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be C-contiguous: the step works in place")
    if not (isinstance(step, (int, np.integer)) and step >= 1):
        raise ValueError(f"{op}: step counts from 1, got {step!r}")
    t = dtype.type
    run = _adamw_step if use_parallel(param.size, PARALLEL_MIN_SIZE) else _adamw_step_serial
    run(
        param, grad, exp_avg, exp_avg_sq, t(1.0 - lr * weight_decay), t(beta1), t(beta2),
        t(lr / (1.0 - beta1**step)), t(math.sqrt(1.0 - beta2**step)), t(eps),
    )

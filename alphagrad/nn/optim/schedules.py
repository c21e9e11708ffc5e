"""Learning-rate schedules as pure functions of the step. With ``max_lr=1.0`` they are factors
for ``lr_scheduler.LambdaLR``, which applies one to every parameter group's lr:

>>> from functools import partial
>>> sched = LambdaLR(opt, partial(warmup_cosine, max_lr=1.0, min_lr=0.1,
...                               warmup_steps=100, decay_steps=5000))
>>> for step in range(5000):
...     ...; opt.step(); sched.step()
"""

from __future__ import annotations

import math


def _warmup(step: int, max_lr: float, warmup_steps: int) -> float | None:
    """Linear warmup ``max_lr·(step+1)/warmup_steps``, or None once it is over."""
    if step < 0:
        raise ValueError(f"schedule: step must be >= 0, got {step}")
    return max_lr * (step + 1) / warmup_steps if step < warmup_steps else None


def _decay_fraction(step: int, warmup_steps: int, decay_steps: int) -> float:
    """How far ``step`` is through the decay phase, in [0, 1]."""
    if decay_steps < warmup_steps:
        raise ValueError(
            f"schedule: decay_steps ({decay_steps}) must be >= warmup_steps ({warmup_steps})"
        )
    if step >= decay_steps:
        return 1.0
    return (step - warmup_steps) / (decay_steps - warmup_steps)


def warmup_cosine(
    step: int, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int
) -> float:
    """nanoGPT's schedule: linear warmup to ``max_lr``, cosine down to ``min_lr`` at
    ``decay_steps``, then ``min_lr``.

        >>> warmup_cosine(0, 1.0, 0.1, warmup_steps=10, decay_steps=100)
        0.1
    """
    lr = _warmup(step, max_lr, warmup_steps)
    if lr is not None:
        return lr
    coeff = 0.5 * (1.0 + math.cos(math.pi * _decay_fraction(step, warmup_steps, decay_steps)))
    return min_lr + coeff * (max_lr - min_lr)


def linear(step: int, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup to ``max_lr``, then a straight line down to ``min_lr`` at ``decay_steps``.

    >>> linear(55, 1.0, 0.0, warmup_steps=10, decay_steps=100)
    0.5
    """
    lr = _warmup(step, max_lr, warmup_steps)
    if lr is not None:
        return lr
    return min_lr + (1.0 - _decay_fraction(step, warmup_steps, decay_steps)) * (max_lr - min_lr)


def constant(step: int, lr: float, warmup_steps: int = 0) -> float:
    """``lr`` after an optional linear warmup.

    >>> constant(4, 1e-3, warmup_steps=10)
    0.0005
    """
    warm = _warmup(step, lr, warmup_steps)
    return lr if warm is None else warm

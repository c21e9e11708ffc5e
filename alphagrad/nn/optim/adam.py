"""Adam and AdamW, both stepping through the fused ``adamw_steps`` kernel."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from alphagrad.autograd.tensor import Tensor
from alphagrad.nn.optim.optimizer import Optimizer
from alphagrad.tensor.kernels import adamw_steps


class Adam(Optimizer):
    """``torch.optim.Adam``: L2 weight decay is added to the gradient (``g + weight_decay·p``)
    before the moments see it. Use ``AdamW`` for decoupled decay.

        >>> opt = Adam(model.parameters(), lr=3e-4)
    """

    decoupled = False

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        name = type(self).__name__
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"{name}: lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}"
            )
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")
        super().__init__(
            params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        )

    def _init_state(self, params: list[Tensor]) -> None:
        """Zero moments for ``params``, carved from one buffer per dtype so they sit together."""
        for dtype in {p.dtype for p in params}:
            same = [p for p in params if p.dtype == dtype]
            flat = np.zeros((2, sum(p.numel() for p in same)), dtype)
            start = 0
            for p in same:
                end = start + p.numel()
                self.state[p] = {
                    "step": 0,
                    "exp_avg": flat[0, start:end].reshape(p.shape),
                    "exp_avg_sq": flat[1, start:end].reshape(p.shape),
                }
                start = end

    def step(self) -> None:
        """Update every parameter that has a gradient, in place (one kernel call per group and
        dtype)."""
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = (
                group["lr"],
                group["betas"],
                group["eps"],
                group["weight_decay"],
            )
            live = [p for p in group["params"] if p.grad is not None]
            self._init_state([p for p in live if p not in self.state])
            for dtype in {p.dtype for p in live}:
                tensors = []
                for p in live:
                    if p.dtype != dtype:
                        continue
                    state = self.state[p]
                    state["step"] += 1
                    grad = p.grad.data.astype(p.dtype, copy=False)
                    if wd and not self.decoupled:
                        grad = grad + wd * p.data
                    if not p.data.flags.c_contiguous:
                        p.data = np.ascontiguousarray(p.data)
                    tensors.append((p.data.reshape(-1), np.ascontiguousarray(grad).reshape(-1),
                                    state["exp_avg"].reshape(-1), state["exp_avg_sq"].reshape(-1),
                                    state["step"]))
                adamw_steps(*zip(*tensors), lr, beta1, beta2, eps,
                            wd if self.decoupled else 0.0)


class AdamW(Adam):
    """``torch.optim.AdamW``: decoupled weight decay, ``p *= 1 − lr·weight_decay`` before the
    Adam step.

    >>> opt = AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    """

    decoupled = True

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ):
        super().__init__(params, lr, betas, eps, weight_decay)

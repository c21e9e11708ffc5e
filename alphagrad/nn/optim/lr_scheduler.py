"""Learning-rate schedulers with PyTorch's names and behaviour (``alphagrad.optim.lr_scheduler``).

Each sets every parameter group's ``lr`` from the group's initial lr and the step count, in
closed form, so a scheduler's whole state is that count (``state_dict`` round-trips exactly);
``ReduceLROnPlateau`` alone follows a metric (``step(val_loss)``) and keeps its counters.
Create one after the optimizer and call ``step()`` after each ``optimizer.step()``:

    >>> opt = optim.AdamW(model.parameters(), lr=6e-4)
    >>> warmup = LinearLR(opt, start_factor=0.01, total_iters=100)
    >>> cosine = CosineAnnealingLR(opt, T_max=4900, eta_min=6e-5)
    >>> sched = SequentialLR(opt, [warmup, cosine], milestones=[100])
    >>> for step in range(5000):
    ...     ...; opt.step(); sched.step()

The schedule functions of ``alphagrad.optim`` (``warmup_cosine``...) plug into ``LambdaLR`` as
factors: ``LambdaLR(opt, partial(warmup_cosine, max_lr=1.0, min_lr=0.1, ...))``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

from alphagrad.nn.optim.optimizer import Optimizer


def _checked(optimizer: Optimizer, name: str) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: expected an Optimizer, got {type(optimizer).__name__}")
    return optimizer


def _per_group(value: float | Sequence[float], optimizer: Optimizer, name: str) -> list[float]:
    """``value`` for every parameter group: one number, or one per group."""
    groups = len(optimizer.param_groups)
    values = list(value) if isinstance(value, (list, tuple)) else [value] * groups
    if len(values) != groups:
        raise ValueError(f"{name}: {len(values)} values for {groups} parameter groups")
    return [float(v) for v in values]


class LRScheduler:
    """Base class: subclasses give ``lr_at(base_lr, epoch)`` (or ``lrs(epoch)``, one lr per
    group); ``last_epoch`` counts ``step()``s."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        self.optimizer = _checked(optimizer, type(self).__name__)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def lrs(self, epoch: int) -> list[float]:
        """Each parameter group's lr at step ``epoch``."""
        return [self.lr_at(base, epoch) for base in self.base_lrs]

    def get_last_lr(self) -> list[float]:
        """The lr of each parameter group, as last set."""
        return list(self._last_lr)

    def step(self) -> None:
        self.last_epoch += 1
        self._last_lr = [float(lr) for lr in self.lrs(self.last_epoch)]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self.last_epoch = int(state_dict["last_epoch"]) - 1
        self.step()


class LambdaLR(LRScheduler):
    """``lr = initial_lr · lr_lambda(epoch)``; one function, or one per parameter group."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable],
                 last_epoch: int = -1):
        groups = len(optimizer.param_groups)
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * groups
        if len(lambdas) != groups:
            raise ValueError(f"LambdaLR: {len(lambdas)} lr_lambdas for {groups} parameter groups")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def lrs(self, epoch: int) -> list[float]:
        return [base * fn(epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


class StepLR(LRScheduler):
    """``lr = initial_lr · gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """``lr = initial_lr · gamma ** epoch``."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from ``initial_lr`` down to ``eta_min`` over ``T_max`` steps."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class LinearLR(LRScheduler):
    """The factor goes in a straight line from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then stays (the usual warmup)."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], "
                             f"got {start_factor} and {end_factor}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        done = min(epoch, self.total_iters) / self.total_iters if self.total_iters > 0 else 1.0
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * done)


class SequentialLR(LRScheduler):
    """``schedulers[i]`` from ``milestones[i - 1]`` on, each counting its steps from 0 there."""

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1):
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} "
                             f"milestones, got {len(milestones)}")
        if any(s.optimizer is not optimizer for s in schedulers):
            raise ValueError("SequentialLR: every scheduler must drive the same optimizer")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"SequentialLR: milestones must increase, got {list(milestones)}")
        self.schedulers, self.milestones = list(schedulers), list(milestones)
        super().__init__(optimizer, last_epoch)

    def lrs(self, epoch: int) -> list[float]:
        i = bisect.bisect_right(self.milestones, epoch)
        return self.schedulers[i].lrs(epoch - (self.milestones[i - 1] if i else 0))


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: half a cosine from ``initial_lr`` down to ``eta_min`` over ``T_0`` steps, then a
    restart at ``initial_lr`` with a period ``T_mult`` times longer.

    ``step(epoch)`` also takes a fractional epoch, for restarts on epoch boundaries with a
    schedule that moves every batch: ``scheduler.step(epoch + i / batches_per_epoch)``.
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1):
        if isinstance(T_0, bool) or not isinstance(T_0, int) or T_0 < 1:
            raise ValueError(f"CosineAnnealingWarmRestarts: T_0 must be an int >= 1, got {T_0!r}")
        if isinstance(T_mult, bool) or not isinstance(T_mult, int) or T_mult < 1:
            raise ValueError(f"CosineAnnealingWarmRestarts: T_mult must be an int >= 1, "
                             f"got {T_mult!r}")
        self.T_0, self.T_mult, self.eta_min = T_0, T_mult, eta_min
        self.epoch = float(last_epoch)  # where in the schedule, fractional if step(epoch) said so
        super().__init__(optimizer, last_epoch)

    def period(self, epoch: float) -> tuple[float, int]:
        """``(T_cur, T_i)``: the steps since the last restart and the length of this period."""
        if epoch < self.T_0:
            return epoch, self.T_0
        if self.T_mult == 1:
            return epoch % self.T_0, self.T_0
        n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
        return epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1), self.T_0 * self.T_mult**n

    def lrs(self, epoch: int) -> list[float]:
        T_cur, T_i = self.period(self.epoch)
        factor = (1 + math.cos(math.pi * T_cur / T_i)) / 2
        return [self.eta_min + (base - self.eta_min) * factor for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        if epoch is not None and epoch < 0:
            raise ValueError(f"CosineAnnealingWarmRestarts: epoch must be >= 0, got {epoch}")
        self.epoch = self.epoch + 1 if epoch is None else float(epoch)
        self.last_epoch = math.floor(self.epoch) - 1
        super().step()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self.step(float(state_dict.get("epoch", state_dict["last_epoch"])))


class OneCycleLR(LRScheduler):
    """The 1cycle policy: the lr climbs from ``max_lr / div_factor`` to ``max_lr`` over the first
    ``pct_start`` of ``total_steps``, then anneals to ``max_lr / div_factor / final_div_factor``
    (``three_phase``: back down to the start first). Momentum (SGD's ``momentum`` or Adam's
    beta1) moves the opposite way between ``max_momentum`` and ``base_momentum``.

        >>> sched = OneCycleLR(opt, max_lr=1e-3, total_steps=5000)   # step() after every batch
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85,
                 max_momentum: float | Sequence[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1):
        name = "OneCycleLR"
        _checked(optimizer, name)
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError(f"{name}: give total_steps, or epochs and steps_per_epoch")
            if epochs <= 0 or steps_per_epoch <= 0:
                raise ValueError(f"{name}: epochs and steps_per_epoch must be > 0, got {epochs} "
                                 f"and {steps_per_epoch}")
            total_steps = epochs * steps_per_epoch
        if total_steps <= 0:
            raise ValueError(f"{name}: total_steps must be > 0, got {total_steps}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', "
                             f"got {anneal_strategy!r}")
        self.total_steps, self.cycle_momentum = total_steps, cycle_momentum
        self._anneal = _cos_anneal if anneal_strategy == "cos" else _linear_anneal
        up = float(pct_start * total_steps) - 1
        # (last step of the phase, where the lr starts, where it ends; the same for momentum)
        self._phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum")]
        if three_phase:
            self._phases += [(2 * up, "max_lr", "initial_lr", "base_momentum", "max_momentum")]
            self._phases += [(total_steps - 1, "initial_lr", "min_lr", "max_momentum",
                              "max_momentum")]
        else:
            self._phases += [(total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        self._beta1 = "betas" in optimizer.defaults
        if cycle_momentum and not self._beta1 and "momentum" not in optimizer.defaults:
            raise ValueError(f"{name}: cycle_momentum needs an optimizer with momentum or betas "
                             f"({type(optimizer).__name__} has neither); pass "
                             f"cycle_momentum=False")
        groups = zip(optimizer.param_groups, _per_group(max_lr, optimizer, name),
                     _per_group(base_momentum, optimizer, name),
                     _per_group(max_momentum, optimizer, name))
        for group, peak, low, high in groups:
            if last_epoch == -1:
                group.update(initial_lr=peak / div_factor, max_lr=peak,
                             min_lr=peak / div_factor / final_div_factor)
            if cycle_momentum:
                group.update(base_momentum=low, max_momentum=high)
        super().__init__(optimizer, last_epoch)

    def _values(self, group: dict[str, Any], epoch: int) -> tuple[float, float]:
        """The lr and momentum of ``group`` at step ``epoch``."""
        if epoch > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {epoch} times, past total_steps "
                             f"{self.total_steps}")
        start = 0.0
        for i, (end, lr_from, lr_to, m_from, m_to) in enumerate(self._phases):
            if epoch <= end or i == len(self._phases) - 1:
                done = (epoch - start) / (end - start)
                lr = self._anneal(group[lr_from], group[lr_to], done)
                momentum = (self._anneal(group[m_from], group[m_to], done)
                            if self.cycle_momentum else 0.0)
                return lr, momentum
            start = end
        raise AssertionError("unreachable: the last phase always matches")

    def lrs(self, epoch: int) -> list[float]:
        return [self._values(group, epoch)[0] for group in self.optimizer.param_groups]

    def step(self) -> None:
        super().step()
        if not self.cycle_momentum:
            return
        for group in self.optimizer.param_groups:
            momentum = self._values(group, self.last_epoch)[1]
            if self._beta1:
                group["betas"] = (momentum, *group["betas"][1:])
            else:
                group["momentum"] = momentum


def _cos_anneal(start: float, end: float, done: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * done) + 1)


def _linear_anneal(start: float, end: float, done: float) -> float:
    return start + (end - start) * done


class ReduceLROnPlateau(LRScheduler):
    """Multiply each group's lr by ``factor`` once ``metrics`` passed to ``step(metrics)`` has
    not improved for more than ``patience`` steps (``mode="min"``: lower is better), then wait
    ``cooldown`` steps before counting again; never below ``min_lr``.

        >>> sched = ReduceLROnPlateau(opt, factor=0.5, patience=2)
        >>> sched.step(val_loss)   # after each evaluation
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8):
        name = "ReduceLROnPlateau"
        self.optimizer = _checked(optimizer, name)
        if not factor < 1.0:
            raise ValueError(f"{name}: factor must be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode must be 'rel' or 'abs', "
                             f"got {threshold_mode!r}")
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode, self.cooldown, self.eps = (
            threshold, threshold_mode, cooldown, eps)
        self.min_lrs = _per_group(min_lr, optimizer, name)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = self.last_epoch = 0
        self._last_lr = [float(group["lr"]) for group in optimizer.param_groups]

    def is_better(self, current: float, best: float) -> bool:
        """Whether ``current`` beats ``best`` by more than the threshold."""
        sign = 1 if self.mode == "min" else -1
        if self.threshold_mode == "rel":
            return sign * current < sign * best * (1 - sign * self.threshold)
        return sign * current < sign * best - self.threshold

    def step(self, metrics: float, epoch: int | None = None) -> None:
        current = float(metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                lr = max(group["lr"] * self.factor, floor)
                if group["lr"] - lr > self.eps:  # changes too small to matter are skipped
                    group["lr"] = lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    _STATE = ("last_epoch", "best", "num_bad_epochs", "cooldown_counter")

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in self._STATE:
            setattr(self, key, type(getattr(self, key))(state_dict[key]))
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

"""``Optimizer``: parameter groups, per-parameter state, and a portable ``state_dict``.

Subclasses implement ``step()``. Per-parameter state holds ints (step counts) and arrays in the
parameter's shape (moments, momentum buffers). State is keyed by the parameter tensor while
training and by position (0, 1, 2, ... across the groups in order) in a ``state_dict``, as in
PyTorch, so a saved state loads into a fresh model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from alphagrad.autograd.tensor import Tensor


class Optimizer:
    """Base class: ``params`` is an iterable of tensors, or of dicts
    ``{"params": [...], **options}`` that override the defaults for their group.

        >>> groups = [{"params": body.parameters()}, {"params": head.parameters(), "lr": 1e-2}]
        >>> opt = SGD(groups, lr=1e-3)
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for group in params if isinstance(params[0], dict) else [{"params": params}]:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (missing ones take the defaults)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("add_param_group: expected a dict with a 'params' entry")
        params = [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: parameters must be Tensors, got {type(p).__name__}"
                )
            if not p.requires_grad:
                raise ValueError(
                    f"{type(self).__name__}: a parameter of shape {p.shape} does not require grad"
                )
            if id(p) in seen:
                raise ValueError(
                    f"{type(self).__name__}: a parameter of shape {p.shape} appears twice; "
                    "pass each (tied) parameter once"
                )
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: unknown options {sorted(unknown)} in a parameter group"
            )
        self.param_groups.append({**self.defaults, **group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget every gradient: ``None``, or zeros in place with ``set_to_none=False``."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self) -> None:
        raise NotImplementedError

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    # ----------------------------------------------------------------- state_dict
    def state_dict(self) -> dict[str, Any]:
        """A snapshot: ``{"state": {index: {"step": int, name: ndarray}}, "param_groups": [...]}``.

        Arrays are copies in their parameter's shape; each group lists its options and the
        indices of its parameters.
        """
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {
                k: v.copy() if isinstance(v, np.ndarray) else v for k, v in s.items()
            }
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and per-parameter state saved by ``state_dict()``.

        The groups must hold the same number of parameters in the same order, and every array
        must have its parameter's shape; anything else raises a ValueError saying where.
        """
        name = type(self).__name__
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the saved state has {len(groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        for i, (g, mine) in enumerate(zip(groups, self.param_groups)):
            if len(g["params"]) != len(mine["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {i} holds {len(g['params'])} parameters in "
                    f"the saved state but {len(mine['params'])} here"
                )
        params = self._params()
        saved = {int(k): v for k, v in saved.items()}
        for i, s in saved.items():
            if not 0 <= i < len(params):
                raise ValueError(
                    f"{name}.load_state_dict: state for parameter {i}, but there are "
                    f"only {len(params)}"
                )
            for k, v in s.items():
                if isinstance(v, np.ndarray) and v.shape != params[i].shape:
                    raise ValueError(
                        f"{name}.load_state_dict: {k!r} of parameter {i} has shape "
                        f"{v.shape}, the parameter has shape {params[i].shape}"
                    )
        for g, mine in zip(groups, self.param_groups):
            mine.update({k: v for k, v in g.items() if k != "params"})
        self.state.clear()
        for i, s in saved.items():  # copies: the caller's dict stays its own
            p = params[i]
            self.state[p] = {
                k: np.array(v, p.dtype) if isinstance(v, np.ndarray) else v for k, v in s.items()
            }

"""Post-accumulate-grad hooks: code that runs as soon as a leaf's gradient is final.

    >>> handle = param.register_post_accumulate_grad_hook(lambda p: print(p.grad.shape))
    >>> loss.backward()            # prints once, when param.grad holds this backward's sum
    >>> handle.remove()

The engine visits each leaf once per ``backward()``, after every path into it has been summed,
so a hook sees the accumulated ``.grad`` (as ``torch.Tensor.register_post_accumulate_grad_hook``).
Data-parallel training starts each gradient bucket's all-reduce from here while backward goes on.
Hooks are kept here, by tensor identity, so a Tensor carries no extra field for them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

_hooks: dict[int, list[Callable[[Any], None]]] = {}


class HookHandle:
    """Returned by ``register_post_accumulate_grad_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, key: int, hook: Callable[[Any], None]):
        self._key, self._hook = key, hook

    def remove(self) -> None:
        hooks = _hooks.get(self._key)
        if hooks is not None and self._hook in hooks:
            hooks.remove(self._hook)
            if not hooks:
                del _hooks[self._key]


def register(tensor: Any, hook: Callable[[Any], None]) -> HookHandle:
    if tensor._ctx is not None or not tensor.requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that "
                           "requires grad has a gradient to accumulate")
    key = id(tensor)
    if key not in _hooks:
        _hooks[key] = []
        weakref.finalize(tensor, _hooks.pop, key, None)  # a dead tensor's id may be reused
    _hooks[key].append(hook)
    return HookHandle(key, hook)


def run_hooks(tensor: Any) -> None:
    """Call the hooks of ``tensor`` (a leaf whose gradient this backward has just completed)."""
    for hook in _hooks.get(id(tensor), ()):
        hook(tensor)


def has_hooks() -> bool:
    return bool(_hooks)

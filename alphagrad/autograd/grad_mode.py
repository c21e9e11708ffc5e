"""Whether operations record a graph for backward: ``no_grad`` / ``enable_grad``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """True when new operations are recorded for ``backward()``."""
    return _GradMode.enabled


class _SetGradMode:
    mode: bool

    def __enter__(self) -> None:
        self._previous = _GradMode.enabled
        _GradMode.enabled = self.mode

    def __exit__(self, *exc) -> None:
        _GradMode.enabled = self._previous

    def __call__(self, fn: F) -> F:
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            previous, _GradMode.enabled = _GradMode.enabled, mode
            try:
                return fn(*args, **kwargs)
            finally:
                _GradMode.enabled = previous

        return wrapper  # type: ignore[return-value]


class no_grad(_SetGradMode):
    """Record nothing inside: ``with ag.no_grad(): y = model(x)``; also a decorator."""

    mode = False


class enable_grad(_SetGradMode):
    """Record again inside a ``no_grad`` block; also a decorator."""

    mode = True


class inference_mode(_SetGradMode):
    """``no_grad`` under PyTorch's other name: ``with ag.inference_mode(): ...``; also a decorator.
    ``inference_mode(False)`` records as usual."""

    def __init__(self, mode: bool = True):
        self.mode = not mode

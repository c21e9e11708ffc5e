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
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_SetGradMode):
    """Record nothing inside: ``with ag.no_grad(): y = model(x)``; also a decorator."""

    mode = False


class enable_grad(_SetGradMode):
    """Record again inside a ``no_grad`` block; also a decorator."""

    mode = True

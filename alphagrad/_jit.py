"""The one Numba decorator factory every kernel in alphagrad is compiled through.

Kernels are cached on disk (``cache=True``) and compiled lazily on first call, so
``import alphagrad`` stays fast. Fast-math is on except ``nnan``/``ninf``: masks use
``-inf`` and must stay exact. Division follows NumPy (``error_model="numpy"``: x/0 is inf or
nan, not an exception): the zero-divisor check Python's model puts before every ``/`` is a
branch that stops LLVM from vectorising the loop around it.
"""

from __future__ import annotations

from collections.abc import Callable

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
# the code generation options of every kernel, beside caching and parallel loops
OPTIONS = {"fastmath": set(FASTMATH), "nogil": True, "error_model": "numpy"}


def kernel(parallel: bool = False) -> Callable:
    """Decorator for a private Numba kernel; ``parallel=True`` enables ``prange``."""
    return numba.njit(cache=True, parallel=parallel, **OPTIONS)

"""The one Numba decorator factory every kernel in alphagrad is compiled through.

Kernels are cached on disk (``cache=True``) and compiled lazily on first call, so
``import alphagrad`` stays fast. Fast-math is on except ``nnan``/``ninf``: masks use
``-inf`` and must stay exact.
"""

from __future__ import annotations

from typing import Callable

import numba

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def kernel(parallel: bool = False) -> Callable:
    """Decorator for a private Numba kernel; ``parallel=True`` enables ``prange``."""
    return numba.njit(cache=True, fastmath=set(FASTMATH), parallel=parallel, nogil=True)

"""The one Numba decorator factory every kernel in alphagrad is compiled through.

Kernels are cached on disk (``cache=True``) and compiled lazily on first call, so
``import alphagrad`` stays fast. Fast-math is on except ``nnan``/``ninf``: masks use
``-inf`` and must stay exact. Division follows NumPy (``error_model="numpy"``: x/0 is inf or
nan, not an exception): the zero-divisor check Python's model puts before every ``/`` is a
branch that stops LLVM from vectorising the loop around it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numba

# OpenMP worker threads spin after each parallel kernel and starve the BLAS threads of the
# matmul that follows (measured: a GPT step several times slower on 2 cores). The workqueue
# layer's workers sleep instead. A user's NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def kernel(parallel: bool = False) -> Callable:
    """Decorator for a private Numba kernel; ``parallel=True`` enables ``prange``."""
    return numba.njit(cache=True, fastmath=set(FASTMATH), parallel=parallel, nogil=True,
                      error_model="numpy")

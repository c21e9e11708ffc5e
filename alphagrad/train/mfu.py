"""Model FLOPs utilisation: achieved FLOP/s over what this CPU's BLAS reaches on a large GEMM."""

from __future__ import annotations

import functools
import time

import numpy as np

from alphagrad.tensor.threads import blas_threads


@functools.cache
def peak_flops(num_threads: int, n: int = 1024, repeats: int = 20) -> float:
    """Float32 FLOP/s of the best of ``repeats`` n×n GEMMs by NumPy's BLAS on its own
    ``num_threads`` threads.

    Measured once per thread count and kept: the denominator of MFU.
    """
    a = np.ones((n, n), np.float32)
    out = np.empty_like(a)
    with blas_threads(num_threads):
        np.matmul(a, a, out=out)
        best = min(_timed(a, out) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(a: np.ndarray, out: np.ndarray) -> float:
    started = time.perf_counter()
    np.matmul(a, a, out=out)
    return time.perf_counter() - started

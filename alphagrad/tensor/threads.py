"""One thread count for both Numba kernels and the BLAS library behind NumPy's matmul.

The two never nest: BLAS is called from Python between kernels, never inside a
``prange`` loop, so each may use every thread it is given.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numba
import numpy as np

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
    "MKL_Set_Num_Threads",
)


def _blas_candidates() -> list[str]:
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                name = os.path.basename(path).lower()
                if ("blas" in name or "mkl_rt" in name) and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    paths += [p for p in glob.glob(os.path.join(libs, "*blas*")) if p not in paths]
    return paths


def _find_blas_setter():
    for path in _blas_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn.restype = None
                return fn
    return None


_blas_setter = None
_blas_searched = False
_num_threads: int | None = None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in Numba kernels and in BLAS (matmul)."""
    global _blas_setter, _blas_searched, _num_threads
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    n = min(n, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    if not _blas_searched:
        _blas_setter, _blas_searched = _find_blas_setter(), True
    if _blas_setter is not None:
        _blas_setter(n)
    _num_threads = n


def get_num_threads() -> int:
    """The thread count in force (all cores unless ``set_num_threads`` said otherwise)."""
    return _num_threads if _num_threads is not None else numba.get_num_threads()

"""The BLAS library behind NumPy's matmul, found once: its thread setter and its GEMM entry points.

NumPy's wheels carry OpenBLAS under prefixed, 64-bit-integer names (``scipy_cblas_sgemm64_``);
other builds export the plain ones. Nothing here is required: a NumPy whose BLAS cannot be found
(or exports no CBLAS GEMM) still works, with matmul left to NumPy and BLAS to its own threads.
"""

from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass

import numpy as np

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
    "MKL_Set_Num_Threads",
)
# CBLAS names of 64-bit-integer (ILP64) builds, whose sizes and strides the GEMM kernel passes as
# int64; a 32-bit-integer BLAS is left to NumPy
_GEMM_NAMES = (("scipy_cblas_", "64_"), ("cblas_", "64_"))


@dataclass(frozen=True)
class Blas:
    set_num_threads: ctypes._CFuncPtr | None  # f(n): BLAS's own thread count
    sgemm: int  # address of the ILP64 cblas_sgemm, 0 if not found
    dgemm: int  # address of the ILP64 cblas_dgemm, 0 if not found


def _candidates() -> list[str]:
    """Shared libraries that look like a BLAS: those this process has loaded, then NumPy's own."""
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


def _address(lib: ctypes.CDLL, name: str) -> int:
    fn = getattr(lib, name, None)
    return 0 if fn is None else ctypes.cast(fn, ctypes.c_void_p).value or 0


def _find() -> Blas:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(lib, n) for n in _SETTERS if getattr(lib, n, None)), None)
        if setter is None:
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], None
        for prefix, suffix in _GEMM_NAMES:
            sgemm = _address(lib, f"{prefix}sgemm{suffix}")
            dgemm = _address(lib, f"{prefix}dgemm{suffix}")
            if sgemm and dgemm:
                return Blas(setter, sgemm, dgemm)
        return Blas(setter, 0, 0)
    return Blas(None, 0, 0)


BLAS = _find()

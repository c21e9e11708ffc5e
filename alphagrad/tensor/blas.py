"""The BLAS library behind NumPy's matmul, found once: its thread setter and its GEMM entry points.

NumPy's wheels carry OpenBLAS under prefixed, 64-bit-integer names (``scipy_cblas_sgemm64_``);
other builds (conda's MKL or OpenBLAS, a distribution's NumPy) export the plain CBLAS names,
whose integers are 32-bit. The wheel's own copy is looked for first: SciPy's wheels carry an
OpenBLAS of their own, and with SciPy imported first, that one was found instead of NumPy's (its
pool set instead of NumPy's, no GEMM: a char-small step 0.83x). Nothing here is required: a NumPy
whose BLAS cannot be found (or exports no CBLAS GEMM) still works, with matmul left to NumPy and
BLAS to its own threads.
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
# CBLAS GEMM names as (prefix, suffix, whether sizes and strides are 64-bit integers): the
# 64-bit-integer (ILP64) builds first, where a library exports both
_GEMM_NAMES = (("scipy_cblas_", "64_", True), ("cblas_", "64_", True), ("cblas_", "_64", True),
               ("scipy_cblas_", "", False), ("cblas_", "", False))


@dataclass(frozen=True)
class Blas:
    set_num_threads: ctypes._CFuncPtr | None  # f(n): BLAS's own thread count
    sgemm: int  # address of cblas_sgemm, 0 if not found
    dgemm: int  # address of cblas_dgemm, 0 if not found
    ilp64: bool = True  # whether the GEMMs take 64-bit integers (else 32-bit)


def _candidates() -> list[str]:
    """Shared libraries that look like a BLAS: the one NumPy's wheel carries, then those this
    process has loaded."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    paths = sorted(glob.glob(os.path.join(libs, "*blas*")))
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                name = os.path.basename(path).lower()
                if ("blas" in name or "mkl_rt" in name) and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def _address(lib: ctypes.CDLL, name: str) -> int:
    fn = getattr(lib, name, None)
    return 0 if fn is None else ctypes.cast(fn, ctypes.c_void_p).value or 0


def load(path: str) -> Blas | None:
    """The BLAS in the shared library at ``path``, or None if it has no known thread setter."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    setter = next((getattr(lib, n) for n in _SETTERS if getattr(lib, n, None)), None)
    if setter is None:
        return None
    setter.argtypes, setter.restype = [ctypes.c_int], None
    for prefix, suffix, ilp64 in _GEMM_NAMES:
        sgemm = _address(lib, f"{prefix}sgemm{suffix}")
        dgemm = _address(lib, f"{prefix}dgemm{suffix}")
        if sgemm and dgemm:
            return Blas(setter, sgemm, dgemm, ilp64)
    return Blas(setter, 0, 0)


def _find() -> Blas:
    return next(filter(None, map(load, _candidates())), Blas(None, 0, 0))


BLAS = _find()

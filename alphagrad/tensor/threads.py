"""One thread count for both Numba kernels and the BLAS library behind NumPy's matmul.

The two never nest: BLAS is called from Python between kernels, never inside a
``prange`` loop, so each may use every thread it is given.

Both split a parallel loop into one fixed share per thread and wait for the last share. When
another process keeps a core busy, the thread that shares a core with it runs only when the
scheduler gives it a time slice (milliseconds), and every kernel and GEMM of a step waits for
it: measured on 2 cores with one busy-looping process, a char-sized training step ran 13x
slower at 2 threads than at 1. So unless ``set_num_threads`` fixes a count, ``step_done()``
(called once per training step, at the end of ``backward``) looks at how many cores other
processes kept busy over the last half second and uses only the cores left free (at least one).
"""

from __future__ import annotations

import ctypes
import glob
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
_num_threads: int | None = None  # the count in force once anything set one
_fixed = False  # True once set_num_threads chose a count: no adapting to the machine's load


def _use(n: int) -> None:
    global _blas_setter, _blas_searched, _num_threads
    numba.set_num_threads(n)
    if not _blas_searched:
        _blas_setter, _blas_searched = _find_blas_setter(), True
    if _blas_setter is not None:
        _blas_setter(n)
    _num_threads = n


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in Numba kernels and in BLAS (matmul).

    ``None`` restores the default: all cores, fewer while other processes keep some busy
    (re-measured every half second of training).

    >>> set_num_threads(1)  # one core, whatever else the machine runs
    """
    global _fixed
    if n is None:
        _fixed = False
        _use(_fitted if _fitted is not None else numba.config.NUMBA_NUM_THREADS)
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int or None, got {n!r}")
    _fixed = True
    _use(min(n, numba.config.NUMBA_NUM_THREADS))


def get_num_threads() -> int:
    """The thread count in force (all cores unless ``set_num_threads`` said otherwise, or
    other processes keep cores busy)."""
    return _num_threads if _num_threads is not None else numba.get_num_threads()


SERIAL_ROWS = 32  # a forward over fewer rows than this (a decoding step) runs on one thread


@contextmanager
def serial_below(rows: int, limit: int = SERIAL_ROWS) -> Iterator[None]:
    """One thread for a forward over fewer than ``limit`` rows, such as a decoding step: its
    products are matrix-vector sized, and handing each of its many small kernels and products to
    several threads costs more in waking and joining them than it saves. The thread count in
    force (fixed or following the load) is back afterwards."""
    threads = get_num_threads()
    if rows >= limit or threads == 1:
        yield
        return
    _use(1)
    try:
        yield
    finally:
        _use(threads)


# ----------------------------------------------------------------------------- adapting to load
_WINDOW = 0.5  # seconds of wall time over which other processes' load is averaged
_HEADROOM = 0.25  # a core counts as free while others keep it busy less than 25% of the time
_watch: tuple[float, float, float] | None = None  # (wall, busy CPU seconds, our CPU seconds)
_fitted: int | None = None  # the count the load called for when last looked at


def _cpus_busy_seconds() -> float | None:
    """CPU seconds the cores this process may run on spent busy since boot (Linux), or None."""
    try:
        cpus = {f"cpu{i}".encode() for i in os.sched_getaffinity(0)}
        with open("/proc/stat", "rb") as f:
            lines = f.read().splitlines()
    except (OSError, AttributeError):
        return None
    ticks = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in cpus:
            values = [int(v) for v in fields[1:9]]
            ticks += sum(values) - values[3] - values[4]  # all but idle and iowait; steal counts
    return ticks / os.sysconf("SC_CLK_TCK")


def free_cores(since: tuple[float, float, float], now: tuple[float, float, float]) -> float:
    """Cores of ours that other processes left idle between two ``(wall, busy, own)`` marks."""
    wall, busy, own = (b - a for a, b in zip(since, now))
    others = max(0.0, busy - own) / wall
    return len(os.sched_getaffinity(0)) - others


def step_done() -> None:
    """Mark the end of a training step; under the default setting, fit the thread count to the
    cores other processes left free over the last half second."""
    global _watch, _fitted
    if _fixed:
        return
    wall = time.perf_counter()
    if _watch is not None and wall - _watch[0] < _WINDOW:
        return
    busy = _cpus_busy_seconds()
    if busy is None:
        return
    mark = (wall, busy, time.process_time())
    if _watch is not None:
        free = free_cores(_watch, mark)
        _fitted = max(1, min(numba.config.NUMBA_NUM_THREADS, int(free + _HEADROOM)))
        if _fitted != get_num_threads():
            _use(_fitted)
    _watch = mark

"""One thread count for both Numba kernels and the GEMMs of NumPy's BLAS, and the pool they run on.

Where it can, alphagrad runs every GEMM on the kernels' own thread pool (Numba's OpenMP layer):
``kernels.matmul`` hands each thread a piece of the product for BLAS to compute on that thread,
and BLAS's own pool stays asleep. A pool's workers spin for a while after each parallel loop, so
that the next one starts at once; with two pools, the spinning workers of one took a core from
the other (measured on 2 cores: a char-sized step no faster with its kernels on two threads than
on one). Without the OpenMP runtime (libgomp) or a BLAS whose GEMM can be called directly, the
kernels run on Numba's workqueue layer, whose idle workers sleep, and BLAS on its own threads.

A parallel loop splits into one fixed share per thread and waits for the last share. When
another process keeps a core busy, the thread that shares a core with it runs only when the
scheduler gives it a time slice (milliseconds), and every kernel and GEMM of a step waits for
it: measured on 2 cores with one busy-looping process, a char-sized training step ran 13x
slower at 2 threads than at 1. So unless ``set_num_threads`` fixes a count, ``step_done()``
(called once per training step, at the end of ``backward``) looks at how many cores other
processes kept busy over the last half second and uses only the cores left free (at least one).
Nor does the default start more threads than the cores of a CPU quota the process runs under
(a container's ``--cpus``; see ``alphagrad._cpus``).

GNU OpenMP cannot run a parallel loop in a process forked from one that has used it (Numba
stops such a child), so a forked child runs everything on one thread, as the serial kernels.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numba

from alphagrad._cpus import cpu_quota, whole_cores
from alphagrad.tensor.blas import BLAS


def _omp_available() -> bool:
    try:
        import numba.np.ufunc.omppool  # noqa: F401  (loads only with the GNU OpenMP runtime)
    except ImportError:
        return False
    return True


def _gnu_openmp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime Numba's OpenMP layer runs on (already loaded with it)."""
    try:
        return ctypes.CDLL("libgomp.so.1") if _OPENMP else None
    except OSError:
        return None


# A user's NUMBA_THREADING_LAYER wins; then GEMMs share the kernels' pool only if it is OpenMP.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "omp" if BLAS.sgemm and _omp_available() else "workqueue"
_OPENMP = numba.config.THREADING_LAYER == "omp"
_ONE_POOL = bool(BLAS.sgemm) and _OPENMP
_GOMP = _gnu_openmp()
_most = numba.config.NUMBA_NUM_THREADS  # the most threads any setting gives; 1 in a forked child
_QUOTA = cpu_quota()  # cores' worth of CPU time the process's cgroup allows, None: no limit
_num_threads: int | None = None  # the count in force once anything set one
_fixed = False  # True once set_num_threads chose a count: no adapting to the machine's load


def openmp_pool() -> bool:
    """Whether the kernels run on Numba's OpenMP layer, whose workers spin a while between
    parallel loops, so that a loop starts in microseconds."""
    return _OPENMP


def one_pool() -> bool:
    """Whether GEMMs run on the kernels' thread pool (through ``kernels.matmul``)."""
    return _ONE_POOL


def _keep_blas_for(n: int) -> None:
    """BLAS's own thread count while alphagrad uses ``n`` threads: one where its GEMMs run on
    the kernels' pool (a piece must not wake BLAS's own pool), else ``n``."""
    if BLAS.set_num_threads is not None:
        BLAS.set_num_threads(1 if _ONE_POOL else n)


def _default() -> int:
    """The thread count of the default setting on an idle machine: a thread per core the
    process may run on, and no more than a CPU quota's cores, rounded (at least one)."""
    return _most if _QUOTA is None else min(_most, whole_cores(_QUOTA))


def _use(n: int) -> None:
    """Run on ``n`` threads, at most ``_most``: every thread count is set here."""
    global _num_threads
    n = min(n, _most)
    numba.set_num_threads(n)  # the first call starts Numba's threads
    if _GOMP is not None:
        # Numba's OpenMP layer allows nested parallel regions. Another library on the same
        # runtime (PyTorch binds to it when imported after alphagrad) then opened a nested team
        # inside each of its parallel loops: torch's causal attention ran 200-300x slower.
        # alphagrad's kernels never nest, so one active level is all they need.
        _GOMP.omp_set_max_active_levels(1)
    _keep_blas_for(n)
    _num_threads = n


def _after_fork_in_child() -> None:
    global _most
    _most = 1
    _use(1)


if _OPENMP:
    os.register_at_fork(after_in_child=_after_fork_in_child)
if _ONE_POOL:
    _keep_blas_for(_most)  # from the start, before any kernel asks for the thread count


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in Numba kernels and in matrix products.

    Where GEMMs run on the kernels' pool (see the module docstring), BLAS itself is kept to one
    thread, so NumPy's own ``@`` outside alphagrad runs on one thread; ``kernels.matmul`` is the
    threaded product.

    ``None`` restores the default: all cores (no more than a CPU quota allows), fewer while
    other processes keep some busy (re-measured every half second of training).

    >>> set_num_threads(1)  # one core, whatever else the machine runs
    """
    global _fixed
    if n is None:
        _fixed = False
        _use(_fitted if _fitted is not None else _default())
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int or None, got {n!r}")
    _fixed = True
    _use(n)


def get_num_threads() -> int:
    """The thread count in force (all cores unless ``set_num_threads`` said otherwise, a CPU
    quota allows fewer, or other processes keep cores busy)."""
    if _num_threads is None:  # first asked for by a kernel: start the threads as _use does
        _use(_default())
    return _num_threads


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """BLAS's own pool set to ``n`` threads inside the block, so that NumPy's ``@`` runs as it
    would without alphagrad (to measure NumPy's GEMM peak); as alphagrad sets it afterwards."""
    if BLAS.set_num_threads is not None:
        BLAS.set_num_threads(n)
    try:
        yield
    finally:
        _keep_blas_for(get_num_threads())


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
        _fitted = max(1, min(_default(), int(free + _HEADROOM)))
        if _fitted != get_num_threads():
            _use(_fitted)
    _watch = mark

"""The thread count: fixed by set_num_threads, or fitted to the cores other processes leave."""

import ctypes
import os
import subprocess
import sys
import time

import numba
import pytest

from alphagrad.tensor import threads
from alphagrad.tensor.threads import free_cores, get_num_threads, set_num_threads, step_done

STATE = ("_num_threads", "_fixed", "_watch", "_fitted")


@pytest.fixture(autouse=True)
def restore_state():
    saved = {name: getattr(threads, name) for name in STATE}
    yield
    for name, value in saved.items():
        setattr(threads, name, value)
    threads._use(get_num_threads())


def test_free_cores_subtracts_our_own_cpu_time():
    cores = len(os.sched_getaffinity(0))
    # 2 s of wall time, cores busy for 3 CPU seconds, 1 of them ours: others kept 1 core busy
    assert free_cores((10.0, 100.0, 5.0), (12.0, 103.0, 6.0)) == pytest.approx(cores - 1.0)
    # everything that ran was ours: all cores free
    assert free_cores((0.0, 50.0, 1.0), (1.0, 51.5, 2.5)) == pytest.approx(cores)


def test_set_num_threads_rejects_bad_counts():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="positive int or None"):
            set_num_threads(bad)


def test_a_fixed_count_is_kept_whatever_the_load():
    set_num_threads(1)
    threads._watch = (0.0, 0.0, 0.0)  # a mark long ago: step_done would re-decide now
    step_done()
    assert get_num_threads() == 1


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) < 2,
                    reason="reads a multi-core Linux machine's load")
def test_default_leaves_the_core_another_process_keeps_busy():
    threads._watch = threads._fitted = None  # nothing measured yet: all cores
    set_num_threads(None)
    assert get_num_threads() == numba.config.NUMBA_NUM_THREADS
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        step_done()
        time.sleep(1.0)
        step_done()
    finally:
        busy.kill()
        busy.wait()
    assert get_num_threads() <= len(os.sched_getaffinity(0)) - 1


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads to drop one")
@pytest.mark.parametrize("fixed", [True, False])
def test_a_forward_over_few_rows_runs_on_one_thread_and_the_setting_comes_back(fixed):
    set_num_threads(2 if fixed else None)
    before = (get_num_threads(), threads._fixed)
    with threads.serial_below(threads.SERIAL_ROWS - 1):
        assert get_num_threads() == 1 and numba.get_num_threads() == 1
    assert (get_num_threads(), threads._fixed, numba.get_num_threads()) == (*before, before[0])
    with threads.serial_below(threads.SERIAL_ROWS):
        assert get_num_threads() == before[0]
    with pytest.raises(KeyError), threads.serial_below(1):  # restored on an error too
        raise KeyError
    assert get_num_threads() == before[0]


def test_threads_leave_one_active_openmp_level():
    """Numba's OpenMP layer turns nested parallel regions on; a library sharing the runtime
    (PyTorch imported after alphagrad binds to it) would then nest a team inside each of its
    parallel loops. alphagrad keeps one active level once its threads start."""
    if not threads.openmp_pool():
        pytest.skip("Numba is not on its OpenMP layer here")
    gomp = ctypes.CDLL("libgomp.so.1")
    set_num_threads(1)
    set_num_threads(None)
    assert gomp.omp_get_max_active_levels() == 1

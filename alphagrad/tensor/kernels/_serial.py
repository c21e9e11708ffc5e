"""Serial twins of parallel kernels, for inputs too small to pay for waking the thread pool.

Starting a parallel loop costs microseconds on the OpenMP layer, whose workers spin a while
between loops, and tens of microseconds on the workqueue layer, whose workers sleep (see
``tensor.threads``): as long as a softmax over 4096 x 65 floats takes on one core. At one thread
every kernel runs its twin, so a process that may not start parallel loops (a forked child) never
does. A twin compiles the same
source without ``parallel`` (``prange`` then runs as ``range``). It is a copy of the function
under its own name, because Numba's disk cache keys on the name, not on the parallel flag.
"""

from __future__ import annotations

import types

from alphagrad._jit import kernel
from alphagrad.tensor.threads import get_num_threads

# Below this many elements one thread finishes before two would have started (measured on 2
# cores: softmax, cross-entropy, embedding over 4096 x 65 run faster serial, 8192 x 384 parallel).
PARALLEL_MIN_SIZE = 1 << 19


def use_parallel(size: int, min_size: int = PARALLEL_MIN_SIZE) -> bool:
    """Whether a kernel over ``size`` elements takes its parallel form: large enough, and more
    than one thread in force (one thread would only add the pool's hand-offs)."""
    return size >= min_size and get_num_threads() > 1


def serial_twin(parallel_kernel):
    """The kernel behind the parallel dispatcher ``parallel_kernel``, compiled for one thread."""
    fn = parallel_kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    return kernel()(twin)

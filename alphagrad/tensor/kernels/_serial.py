"""Serial twins of parallel kernels, for inputs too small to pay for waking the thread pool.

Starting a parallel loop costs microseconds on the OpenMP layer, whose workers spin a while
between loops, and about a hundred microseconds on the workqueue layer, whose workers sleep (see
``tensor.threads``): as long as a softmax over 1024 x 256 floats takes on one core. So each
kernel's threshold is measured on the OpenMP layer, and ``use_parallel`` asks for
``WORKQUEUE_FACTOR`` times as much work on any other. At one thread every kernel runs its twin,
so a process that may not start parallel loops (a forked child) never does. A twin compiles the
same source without ``parallel`` (``prange`` then runs as ``range``). It is a copy of the
function under its own name, because Numba's disk cache keys on the name, not on the parallel
flag.
"""

from __future__ import annotations

import types

from alphagrad._jit import kernel
from alphagrad.tensor.threads import get_num_threads, openmp_pool

# Below this many elements of a memory-bound kernel one thread finishes first (measured on 2
# cores, OpenMP layer, forward + backward through the public functions: softmax and
# cross-entropy 1.2x faster on two threads at 256 x 64, layer norm 0.9x there and 1.3x at
# 1024 x 64).
PARALLEL_MIN_SIZE = 1 << 15
# On the workqueue layer two threads paid off only from about 128x the work (measured on 2 cores,
# forward + backward: softmax, layer norm, GELU, cross-entropy 1.1-1.3x slower on two threads
# from 1M to 4M elements, GELU 0.66x at 8M; causal attention 1.2x slower at 16M work units, 1.0x
# at 33M, 0.9x at 50M)
WORKQUEUE_FACTOR = 128
_FACTOR = 1 if openmp_pool() else WORKQUEUE_FACTOR


def use_parallel(size: int, min_size: int = PARALLEL_MIN_SIZE) -> bool:
    """Whether a kernel over ``size`` elements takes its parallel form: large enough for the
    threading layer in use, and more than one thread in force (one thread would only add the
    pool's hand-offs)."""
    return size >= min_size * _FACTOR and get_num_threads() > 1


def serial_twin(parallel_kernel):
    """The kernel behind the parallel dispatcher ``parallel_kernel``, compiled for one thread."""
    fn = parallel_kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    return kernel()(twin)

"""Keep freed buffers in the process for reuse instead of handing them back to the OS.

With glibc's defaults every array above a few hundred KB is a fresh ``mmap``: the kernel that
first writes it pays a page fault per 4 KB page, and freeing it is a ``munmap``. A training step
allocates and frees the same activation-sized buffers each time, so those faults can cost more
than the arithmetic. Raising glibc's mmap and trim thresholds keeps such buffers on the heap,
where the next step reuses them (what a caching allocator does for PyTorch); the price is that
the process keeps its peak memory until it exits. A process's first ``backward()`` makes this
choice unless the process made its own (measured: a plain char-small training loop at 1 thread
ran 25-40% slower with glibc's defaults).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import resource

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


_chosen = False  # True once keep_freed_memory was called


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to keep freed blocks below ``threshold`` bytes; False where there is no glibc.

    The first ``backward()`` calls this unless the process did; to keep glibc's thresholds
    instead, call it first with theirs:

    >>> keep_freed_memory(128 * 1024)  # doctest: +SKIP
    """
    global _chosen
    _chosen = True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold) and mallopt(_M_TRIM_THRESHOLD, threshold))


def keep_freed_memory_by_default() -> None:
    """``keep_freed_memory()`` unless the process already chose its thresholds."""
    if not _chosen:
        keep_freed_memory()


def available_memory() -> int:
    """Bytes this process may hold at most: the machine's RAM, or the address-space limit
    (``ulimit -v``) if that is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf names: not a POSIX system
        total = 1 << 62
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    return min(total, limit) if limit != resource.RLIM_INFINITY else total


def is_array_shape(shape: object, itemsize: int) -> bool:
    """Whether ``shape`` (read from a file) is a list of non-negative ints that NumPy can make an
    array of: at most 32 axes, and the sizes other than 0 times ``itemsize`` below 2**62, so
    that even an empty array (a 0 among the sizes) cannot name an impossible one."""
    if not isinstance(shape, list) or len(shape) > 32 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        return False
    return math.prod(n for n in shape if n) * itemsize < 2**62

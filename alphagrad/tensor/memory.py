"""Keep freed buffers in the process for reuse instead of handing them back to the OS.

With glibc's defaults every array above a few hundred KB is a fresh ``mmap``: the kernel that
first writes it pays a page fault per 4 KB page, and freeing it is a ``munmap``. A training step
allocates and frees the same activation-sized buffers each time, so those faults can cost more
than the arithmetic. Raising glibc's mmap and trim thresholds keeps such buffers on the heap,
where the next step reuses them (what a caching allocator does for PyTorch); the price is that
the process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Ask glibc to keep freed blocks below ``threshold`` bytes; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold) and mallopt(_M_TRIM_THRESHOLD, threshold))

"""Freed memory: a process's first backward keeps it for reuse, unless the process chose first."""

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
import numpy as np
import alphagrad as ag

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2

def mmapped_bytes_of_a_fresh_8mb_array():
    before = libc.mallinfo2().hblkhd
    a = np.empty(1 << 21, np.float32)
    return libc.mallinfo2().hblkhd - before

if sys.argv[1] == "glibc":
    ag.keep_freed_memory(128 * 1024)
first = mmapped_bytes_of_a_fresh_8mb_array()
ag.tensor([1.0, 2.0], requires_grad=True).sum().backward()
print(first, mmapped_bytes_of_a_fresh_8mb_array())
"""


def _probe(choice: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, choice], capture_output=True, text=True,
                         check=True)
    before, after = out.stdout.split()
    return int(before), int(after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_the_first_backward_keeps_large_buffers_on_the_heap():
    before, after = _probe("default")
    assert before >= 8 << 20  # glibc's default: a fresh mmap
    assert after == 0  # after backward: from the heap, reused once freed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_a_process_that_chose_its_thresholds_keeps_them():
    before, after = _probe("glibc")
    assert before >= 8 << 20 and after >= 8 << 20

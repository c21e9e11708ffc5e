"""What every test folder may use: a bound on the memory and time one call may take."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator

import pytest


def _address_space() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


@contextlib.contextmanager
def _bounded(extra_bytes: int = 256 << 20, seconds: int = 10) -> Iterator[None]:
    """Run the block with at most ``extra_bytes`` more address space than the process holds now
    (a larger allocation is a MemoryError) and at most ``seconds`` of wall clock (TimeoutError)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)

    def expire(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + extra_bytes, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="session")
def bounded_call():
    """``with bounded_call(): load(crafted)``: a crafted file that makes a loader allocate more
    than its bytes justify (256 MB here, for files of a few kilobytes) or loop fails the test."""
    return _bounded

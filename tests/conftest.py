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


@pytest.fixture(scope="session")
def sentencepiece_of():
    """A builder of SentencePiece-style tokenizers (Llama 2's form) for a text: its characters
    and its words after a ▁ as tokens, merged left to right, <unk> <s> </s> and byte fallback
    for everything else."""
    from alphagrad.tokenizers import SentencePieceBPE

    def build(text: str, prepend: str = "segments", split: bool = False,
              bos_token: str | None = None) -> SentencePieceBPE:
        specials = {"<unk>": 0, "<s>": 1, "</s>": 2}
        vocab = {**specials, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
        for c in sorted(set(text) - {" "}) + ["▁"]:
            vocab.setdefault(c, len(vocab))
        merges = {}
        for word in sorted(set(text.split())):
            for k in range(1, len(word) + 1):
                merges[("▁" + word[:k - 1], word[k - 1])] = None
                vocab.setdefault("▁" + word[:k], len(vocab))
        return SentencePieceBPE(vocab, list(merges), specials, prepend, split, bos_token=bos_token)
    return build

"""Count distinct pre-tokenized chunks of a corpus, streamed block by block.

Memory grows with the number of distinct chunks, not with the corpus: each block is reduced to
its distinct chunks by a Numba hash table, then folded into one running table. Two worker
threads pre-tokenize and reduce blocks while the main thread folds (the kernels release the GIL).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import regex

from alphagrad._jit import kernel
from alphagrad.tokenizers.pretokenize import split

# A block may end only between a letter or digit and the whitespace after it: every built-in
# pattern splits there whatever follows, so blocks pre-tokenize exactly as the whole text would.
_SAFE_CUT = regex.compile(r"(?r)[\p{L}\p{N}](?=\s)")
_EMPTY = np.iinfo(np.int64).max


@kernel()
def hash_bytes(data, start, end):
    """FNV-1a over data[start:end], as uint64."""
    h = np.uint64(14695981039346656037)
    for k in range(start, end):
        h = (h ^ np.uint64(data[k])) * np.uint64(1099511628211)
    return h


@kernel()
def _same_bytes(a, a_start, b, b_start, n):
    for k in range(n):
        if a[a_start + k] != b[b_start + k]:
            return False
    return True


@kernel()
def _find_or_add(slots, hashes, starts, lens, arena, key, key_start, n, h, count):
    # Open addressing; slots hold entry indices, _EMPTY when free. Returns the entry index.
    mask = slots.shape[0] - 1
    s = np.int64(h & np.uint64(mask))
    while True:
        e = slots[s]
        if e == 9223372036854775807:
            e = count[0]
            slots[s] = e
            hashes[e] = h
            starts[e] = key_start
            lens[e] = n
            count[0] = e + 1
            return e
        if hashes[e] == h and lens[e] == n and _same_bytes(arena, starts[e], key, key_start, n):
            return e
        s = (s + 1) & mask


@kernel()
def _reduce_block(data, ends, slots, hashes, starts, lens, counts):
    # Distinct chunks of one block: entries point into ``data``. Returns the entry count.
    count = np.zeros(1, np.int64)
    start = 0
    for c in range(ends.shape[0]):
        end = ends[c]
        h = hash_bytes(data, start, end)
        e = _find_or_add(slots, hashes, starts, lens, data, data, start, end - start, h, count)
        counts[e] += 1
        start = end
    return count[0]


@kernel()
def _fold(table_slots, hashes, starts, lens, counts, arena, used, block_data,
          block_hashes, block_starts, block_lens, block_counts):
    # Adds a reduced block to the running table; new keys are copied into ``arena``.
    # used: [entries, arena bytes].
    count = used[:1]
    for k in range(block_hashes.shape[0]):
        n = block_lens[k]
        before = count[0]
        e = _find_or_add(table_slots, hashes, starts, lens, arena, block_data, block_starts[k],
                         n, block_hashes[k], count)
        if e == before:
            arena[used[1] : used[1] + n] = block_data[block_starts[k] : block_starts[k] + n]
            starts[e] = used[1]
            used[1] += n
        counts[e] += block_counts[k]


@kernel()
def _rehash(slots, hashes, n):
    mask = slots.shape[0] - 1
    for e in range(n):
        s = np.int64(hashes[e] & np.uint64(mask))
        while slots[s] != 9223372036854775807:
            s = (s + 1) & mask
        slots[s] = e


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


def _reduce(docs: list[str], pattern: str):
    data, ends, _ = split(docs, pattern)
    slots = np.full(_pow2_at_least(2 * len(ends)), _EMPTY, np.int64)
    hashes = np.empty(len(ends), np.uint64)
    starts, lens = np.empty(len(ends), np.int64), np.empty(len(ends), np.int64)
    counts = np.zeros(len(ends), np.int64)
    n = _reduce_block(data, ends, slots, hashes, starts, lens, counts)
    return data, hashes[:n], starts[:n], lens[:n], counts[:n]


class ChunkCounts:
    """Distinct chunks (bytes) and how often each occurs.

    >>> from alphagrad.tokenizers.pretokenize import GPT2_PATTERN
    >>> cc = ChunkCounts(); cc.add(["ab ab cd"], GPT2_PATTERN); sorted(cc.items())
    [(b' ab', 1), (b' cd', 1), (b'ab', 1)]
    """

    def __init__(self) -> None:
        self.slots = np.full(1 << 16, _EMPTY, np.int64)
        self.hashes = np.empty(1 << 15, np.uint64)
        self.starts = np.empty(1 << 15, np.int64)
        self.lens = np.empty(1 << 15, np.int64)
        self.counts = np.zeros(1 << 15, np.int64)
        self.arena = np.empty(1 << 20, np.uint8)
        self.used = np.zeros(2, np.int64)  # entries, arena bytes

    def __len__(self) -> int:
        return int(self.used[0])

    def fold(self, block) -> None:
        data, hashes, starts, lens, counts = block
        entries = int(self.used[0]) + len(hashes)
        if entries > len(self.hashes):
            grow = max(entries, 2 * len(self.hashes))
            for name in ("hashes", "starts", "lens", "counts"):
                old = getattr(self, name)
                new = np.zeros(grow, old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        if 2 * entries > len(self.slots):
            self.slots = np.full(_pow2_at_least(4 * entries), _EMPTY, np.int64)
            _rehash(self.slots, self.hashes, int(self.used[0]))
        need = int(self.used[1]) + int(lens.sum())
        if need > len(self.arena):
            arena = np.empty(max(need, 2 * len(self.arena)), np.uint8)
            arena[: self.used[1]] = self.arena[: self.used[1]]
            self.arena = arena
        _fold(self.slots, self.hashes, self.starts, self.lens, self.counts, self.arena,
              self.used, data, hashes, starts, lens, counts)

    def add(self, docs: list[str], pattern: str) -> None:
        self.fold(_reduce(docs, pattern))

    def words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bytes, offsets (W+1,), counts (W,)) with the chunks packed end to end."""
        n = len(self)
        lens = self.lens[:n]
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        data = np.empty(int(offsets[-1]), np.uint8)
        _gather(self.arena, self.starts[:n], lens, offsets, data)
        return data, offsets, self.counts[:n].copy()

    def items(self) -> Iterator[tuple[bytes, int]]:
        data, offsets, counts = self.words()
        for k in range(len(counts)):
            yield bytes(data[offsets[k] : offsets[k + 1]]), int(counts[k])


@kernel()
def _gather(arena, starts, lens, offsets, out):
    for k in range(starts.shape[0]):
        out[offsets[k] : offsets[k] + lens[k]] = arena[starts[k] : starts[k] + lens[k]]


def blocks(source, block_chars: int = 1 << 20) -> Iterator[list[str]]:
    """Groups of documents of about ``block_chars`` characters from a training source.

    ``source``: a str (one document), an ``os.PathLike`` file, or an iterable of either. Long
    documents and files are cut only where the built-in patterns always split.
    """
    group, size = [], 0
    for doc in _documents(source, block_chars):
        group.append(doc)
        size += len(doc)
        if size >= block_chars:
            yield group
            group, size = [], 0
    if group:
        yield group


def _documents(source, block_chars: int) -> Iterator[str]:
    if isinstance(source, str):
        yield from _cut(iter([source]), block_chars)
    elif isinstance(source, os.PathLike):
        yield from _cut(_read_file(source, block_chars), block_chars)
    elif isinstance(source, Iterable):
        for item in source:
            if not isinstance(item, (str, os.PathLike)):
                raise TypeError(f"train: source items must be str or path, got {type(item)}")
            yield from _documents(item, block_chars)
    else:
        raise TypeError(f"train: source must be str, path or iterable, got {type(source)}")


def _read_file(path, block_chars: int) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            while piece := f.read(block_chars):
                yield piece
    except OSError as err:
        raise ValueError(f"train: cannot read {os.fspath(path)!r}: {err.strerror}") from None


def _cut(pieces: Iterator[str], block_chars: int) -> Iterator[str]:
    # Re-cuts a stream of text pieces into documents that end at the last safe point. The
    # carried remainder never holds a safe point, so only the new piece is searched.
    carry = ""
    for piece in pieces:
        text = carry + piece
        m = _SAFE_CUT.search(text, max(0, len(carry) - 1))
        if len(text) < block_chars or m is None:
            carry = text
            continue
        yield text[: m.end()]
        carry = text[m.end() :]
    if carry:
        yield carry


def count_chunks(source, pattern: str, num_threads: int = 2) -> ChunkCounts:
    """Distinct chunks of ``source`` (see ``blocks``) under the resolved ``pattern``."""
    counts = ChunkCounts()
    with ThreadPoolExecutor(max(1, num_threads)) as pool:
        pending = []
        for group in blocks(source):
            pending.append(pool.submit(_reduce, group, pattern))
            if len(pending) > 2 * num_threads:
                counts.fold(pending.pop(0).result())
        for future in pending:
            counts.fold(future.result())
    return counts

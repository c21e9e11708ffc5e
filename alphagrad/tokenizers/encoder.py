"""BPE encoding of pre-tokenized chunks in Numba: merge by rank, with a cache for frequent chunks.

Within a chunk the adjacent pair of lowest rank merges first, the leftmost on ties (as tiktoken
and Hugging Face do). Short chunks use a plain scan; long ones a heap over a linked list, so a
1 MB chunk costs O(n log n), not O(n^2).
"""

from __future__ import annotations

import queue

import numpy as np

from alphagrad._jit import kernel
from alphagrad.tokenizers.counting import hash_bytes

_NONE = np.iinfo(np.int64).max


@kernel()
def _find(table, a, b):
    # table: (S, 3) rows of (left << 32 | right, rank, result); key -1 marks a free row.
    key = (np.int64(a) << 32) | np.int64(b)
    mask = table.shape[0] - 1
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    s = np.int64(h ^ (h >> np.uint64(29))) & mask
    while True:
        k = table[s, 0]
        if k == key or k == -1:
            return s
        s = (s + 1) & mask


@kernel()
def _fill_table(table, merges):
    for r in range(merges.shape[0]):
        s = _find(table, merges[r, 0], merges[r, 1])
        table[s, 0] = (merges[r, 0] << 32) | merges[r, 1]
        table[s, 1] = r
        table[s, 2] = merges[r, 2]


@kernel()
def _rank(table, a, b):
    s = _find(table, a, b)
    return table[s, 1] if table[s, 0] != -1 else 9223372036854775807


@kernel()
def _bpe_scan(table, ids, ranks):
    # Merges ids in place; returns the new length. ranks: (n,) scratch.
    n = ids.shape[0]
    for k in range(n - 1):
        ranks[k] = _rank(table, ids[k], ids[k + 1])
    while n > 1:
        best = 0
        for k in range(1, n - 1):
            if ranks[k] < ranks[best]:
                best = k
        if ranks[best] == 9223372036854775807:
            break
        ids[best] = table[_find(table, ids[best], ids[best + 1]), 2]
        for k in range(best + 1, n - 1):
            ids[k] = ids[k + 1]
            ranks[k] = ranks[k + 1] if k + 1 < n - 1 else 0
        n -= 1
        if best > 0:
            ranks[best - 1] = _rank(table, ids[best - 1], ids[best])
        if best < n - 1:
            ranks[best] = _rank(table, ids[best], ids[best + 1])
    return n


@kernel()
def _heap_push(heap, size, rank, pos):
    i = size
    heap[i, 0], heap[i, 1] = rank, pos
    while i > 0:
        parent = (i - 1) >> 1
        if (heap[parent, 0], heap[parent, 1]) <= (heap[i, 0], heap[i, 1]):
            break
        heap[i, 0], heap[parent, 0] = heap[parent, 0], heap[i, 0]
        heap[i, 1], heap[parent, 1] = heap[parent, 1], heap[i, 1]
        i = parent
    return size + 1


@kernel()
def _heap_pop(heap, size):
    size -= 1
    heap[0, 0], heap[0, 1] = heap[size, 0], heap[size, 1]
    i = 0
    while True:
        best = i
        for child in (2 * i + 1, 2 * i + 2):
            if child < size and (heap[child, 0], heap[child, 1]) < (heap[best, 0], heap[best, 1]):
                best = child
        if best == i:
            return size
        heap[i, 0], heap[best, 0] = heap[best, 0], heap[i, 0]
        heap[i, 1], heap[best, 1] = heap[best, 1], heap[i, 1]
        i = best


@kernel()
def _bpe_heap(table, ids):
    # Same result as _bpe_scan in O(n log n): a linked list of symbols and a heap of
    # (rank, position) candidates, checked against the list when popped.
    n = ids.shape[0]
    nxt = np.arange(1, n + 1)
    nxt[n - 1] = -1
    prv = np.arange(-1, n - 1)
    heap = np.empty((3 * n, 2), np.int64)
    size = 0
    for k in range(n - 1):
        r = _rank(table, ids[k], ids[k + 1])
        if r != 9223372036854775807:
            size = _heap_push(heap, size, r, k)
    while size > 0:
        r, i = heap[0, 0], heap[0, 1]
        size = _heap_pop(heap, size)
        j = nxt[i]
        if ids[i] < 0 or j < 0 or _rank(table, ids[i], ids[j]) != r:
            continue
        ids[i] = table[_find(table, ids[i], ids[j]), 2]
        ids[j] = -1
        nxt[i] = nxt[j]
        if nxt[i] >= 0:
            prv[nxt[i]] = i
            r = _rank(table, ids[i], ids[nxt[i]])
            if r != 9223372036854775807:
                size = _heap_push(heap, size, r, i)
        if prv[i] >= 0:
            r = _rank(table, ids[prv[i]], ids[i])
            if r != 9223372036854775807:
                size = _heap_push(heap, size, r, prv[i])
    m = 0
    i = 0
    while i >= 0:
        ids[m] = ids[i]
        m += 1
        i = nxt[i]
    return m


@kernel()
def _encode_chunks(data, ends, byte_ids, table, cache_slots, cache_hash, cache_meta,
                   cache_keys, cache_vals, cache_used, scan_limit, out, chunk_ids):
    # data: (N,) UTF-8; ends: (C,) chunk ends. Out: ids (N,); chunk_ids (C,) ids so far at the
    # end of each chunk. Returns the id count.
    # Cache entry e: key bytes cache_keys[e], ids cache_vals[e], and in cache_meta[e] the key
    # length and id count.
    ranks = np.empty(scan_limit, np.int64)
    width = cache_keys.shape[1]
    mask = cache_slots.shape[0] - 1
    m = 0
    start = 0
    for c in range(ends.shape[0]):
        end = ends[c]
        n = end - start
        if n == 1:
            out[m] = byte_ids[data[start]]
            m += 1
            chunk_ids[c] = m
            start = end
            continue
        s = -1
        h = np.uint64(0)
        if n <= width:
            h = hash_bytes(data, start, end)
            s = np.int64(h & np.uint64(mask))
            while cache_slots[s] >= 0:
                e = cache_slots[s]
                if cache_hash[e] == h and cache_meta[e, 0] == n:
                    same = True
                    for k in range(n):
                        if cache_keys[e, k] != data[start + k]:
                            same = False
                            break
                    if same:
                        break
                s = (s + 1) & mask
            if cache_slots[s] >= 0:
                e = cache_slots[s]
                for k in range(cache_meta[e, 1]):
                    out[m + k] = cache_vals[e, k]
                m += cache_meta[e, 1]
                chunk_ids[c] = m
                start = end
                continue
        ids = out[m : m + n]
        for k in range(n):
            ids[k] = byte_ids[data[start + k]]
        k = _bpe_scan(table, ids, ranks) if n <= scan_limit else _bpe_heap(table, ids)
        if s >= 0 and cache_used[0] < cache_meta.shape[0]:
            e = cache_used[0]
            cache_used[0] += 1
            cache_slots[s] = e
            cache_hash[e] = h
            cache_meta[e, 0], cache_meta[e, 1] = n, k
            cache_keys[e, :n] = data[start:end]
            cache_vals[e, :k] = ids[:k]
        m += k
        chunk_ids[c] = m
        start = end
    return m


class _Cache:
    def __init__(self, entries: int, width: int) -> None:
        self.slots = np.full(2 * entries, -1, np.int64)
        self.hashes = np.zeros(entries, np.uint64)
        self.meta = np.zeros((entries, 2), np.int64)
        self.keys = np.zeros((entries, width), np.uint8)
        self.vals = np.zeros((entries, width), np.int64)
        self.used = np.zeros(1, np.int64)


class Encoder:
    """Turns pre-tokenized UTF-8 into ids, given ordered merges and the id of each byte.

    Thread-safe: each concurrent call borrows its own chunk cache.
    ``cache_entries`` (a power of two) chunks of up to ``cache_width`` bytes are cached; chunks
    longer than ``scan_limit`` bytes use the heap merge.
    """

    def __init__(self, merges: np.ndarray, byte_ids: np.ndarray, cache_entries: int = 1 << 16,
                 cache_width: int = 24, scan_limit: int = 128) -> None:
        self.table = np.full((1 << max(4, (2 * len(merges)).bit_length()), 3), -1, np.int64)
        _fill_table(self.table, np.ascontiguousarray(merges, np.int64).reshape(-1, 3))
        self.byte_ids = np.ascontiguousarray(byte_ids, np.int64)
        self.cache_entries, self.cache_width = cache_entries, cache_width
        self.scan_limit = scan_limit
        self._caches: queue.SimpleQueue[_Cache] = queue.SimpleQueue()

    def encode(self, data: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids of the chunks ``data[ends[i-1]:ends[i]]`` (int64) and the id count at the end of
        each chunk."""
        try:
            cache = self._caches.get_nowait()
        except queue.Empty:
            cache = _Cache(self.cache_entries, self.cache_width)
        try:
            out = np.empty(len(data), np.int64)
            chunk_ids = np.empty(len(ends), np.int64)
            m = _encode_chunks(data, ends, self.byte_ids, self.table, cache.slots, cache.hashes,
                               cache.meta, cache.keys, cache.vals, cache.used, self.scan_limit, out,
                               chunk_ids)
        finally:
            self._caches.put(cache)
        return out[:m], chunk_ids

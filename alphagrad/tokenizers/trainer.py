"""Byte-level BPE training: merge the most frequent adjacent pair until the vocabulary is full.

Words are the distinct pre-tokenized chunks with their counts (``counting.ChunkCounts``). The
merge loop runs in Numba with incremental pair counts: every pair keeps a list of the positions
where it occurs, so a merge touches only the words that contain it, and a lazy max-heap finds the
next best pair.

Tie-break (deterministic): the highest count wins; among equal counts, the pair with the smaller
left id, then the smaller right id. Within a word, overlapping occurrences merge left to right.
A merge whose bytes already form a token reuses that token's id (as Hugging Face does), so ids
and byte strings stay one-to-one; such a merge adds no id.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alphagrad._jit import kernel

# Columns of ``pairs``: left id, right id, weighted count, head of the occurrence list, stamp of
# the last merge step that raised the count. State scalars in ``st``:
_NPAIRS, _HEAP, _POOL, _NEXT_ID, _NMERGES, _ARENA, _STEP = range(7)
_HASH_BASE = np.uint64(0x100000001B3)


@kernel()
def _slot_of(slots, pairs, a, b):
    mask = slots.shape[0] - 1
    h = ((np.uint64(a) << np.uint64(32)) | np.uint64(b)) * np.uint64(0x9E3779B97F4A7C15)
    s = np.int64(h ^ (h >> np.uint64(29))) & mask
    while True:
        p = slots[s]
        if p < 0 or (pairs[p, 0] == a and pairs[p, 1] == b):
            return s
        s = (s + 1) & mask


@kernel()
def _better(heap, i, j, pairs):
    # Whether heap entry i outranks heap entry j: higher count, then smaller (left, right).
    ci, cj = heap[i, 0], heap[j, 0]
    if ci != cj:
        return ci > cj
    pi, pj = heap[i, 1], heap[j, 1]
    if pairs[pi, 0] != pairs[pj, 0]:
        return pairs[pi, 0] < pairs[pj, 0]
    return pairs[pi, 1] < pairs[pj, 1]


@kernel()
def _heap_push(heap, st, pairs, count, pid):
    i = st[1]
    st[1] += 1
    heap[i, 0] = count
    heap[i, 1] = pid
    while i > 0:
        parent = (i - 1) >> 1
        if not _better(heap, i, parent, pairs):
            break
        heap[i, 0], heap[parent, 0] = heap[parent, 0], heap[i, 0]
        heap[i, 1], heap[parent, 1] = heap[parent, 1], heap[i, 1]
        i = parent


@kernel()
def _heap_pop(heap, st, pairs):
    count, pid = heap[0, 0], heap[0, 1]
    st[1] -= 1
    n = st[1]
    heap[0, 0], heap[0, 1] = heap[n, 0], heap[n, 1]
    i = 0
    while True:
        best = i
        for child in (2 * i + 1, 2 * i + 2):
            if child < n and _better(heap, child, best, pairs):
                best = child
        if best == i:
            break
        heap[i, 0], heap[best, 0] = heap[best, 0], heap[i, 0]
        heap[i, 1], heap[best, 1] = heap[best, 1], heap[i, 1]
        i = best
    return count, pid


@kernel()
def _add_count(slots, pairs, pool, st, a, b, w, pos):
    # pairs[(a, b)] += w; a new occurrence at ``pos`` joins the pair's list when w > 0.
    s = _slot_of(slots, pairs, a, b)
    p = slots[s]
    if p < 0:
        p = st[0]
        st[0] += 1
        slots[s] = p
        pairs[p, 0], pairs[p, 1], pairs[p, 2], pairs[p, 3], pairs[p, 4] = a, b, 0, -1, -1
    pairs[p, 2] += w
    if w > 0:
        e = st[2]
        st[2] += 1
        pool[e, 0] = pos
        pool[e, 1] = pairs[p, 3]
        pairs[p, 3] = e
    return p


@kernel()
def _grow(a, rows):
    if rows <= a.shape[0]:
        return a
    bigger = np.empty((max(rows, 2 * a.shape[0]),) + a.shape[1:], a.dtype)
    bigger[: a.shape[0]] = a
    return bigger


@kernel()
def _fit_slots(slots, pairs, npairs):
    # Keeps the pair table at most half full.
    if 2 * npairs <= slots.shape[0]:
        return slots
    size = slots.shape[0]
    while 2 * npairs > size:
        size *= 2
    bigger = np.full(size, -1, np.int64)
    for p in range(npairs):
        bigger[_slot_of(bigger, pairs, pairs[p, 0], pairs[p, 1])] = p
    return bigger


@kernel()
def _init_pairs(sym, nxt, wid, wcount, slots, pairs, pool, heap, st):
    for pos in range(sym.shape[0]):
        if nxt[pos] >= 0:
            _add_count(slots, pairs, pool, st, sym[pos], sym[nxt[pos]], wcount[wid[pos]], pos)
    for p in range(st[0]):
        _heap_push(heap, st, pairs, pairs[p, 2], p)


@kernel()
def _token_for(a, b, tok, tok_hash, tok_pow, tok_slots, arena, st):
    # Id of the token whose bytes are bytes(a) + bytes(b): an existing one, else a new id.
    h = tok_hash[a] * tok_pow[b] + tok_hash[b]
    n = tok[a, 1] + tok[b, 1]
    mask = tok_slots.shape[0] - 1
    s = np.int64(h ^ (h >> np.uint64(31))) & mask
    while tok_slots[s] >= 0:
        t = tok_slots[s]
        if tok_hash[t] == h and tok[t, 1] == n:
            same = True
            at = tok[t, 0]
            for k in range(tok[a, 1]):
                same = same and arena[at + k] == arena[tok[a, 0] + k]
            at += tok[a, 1]
            for k in range(tok[b, 1]):
                same = same and arena[at + k] == arena[tok[b, 0] + k]
            if same:
                return t
        s = (s + 1) & mask
    t = st[3]
    st[3] += 1
    start = st[5]
    arena[start : start + tok[a, 1]] = arena[tok[a, 0] : tok[a, 0] + tok[a, 1]]
    arena[start + tok[a, 1] : start + n] = arena[tok[b, 0] : tok[b, 0] + tok[b, 1]]
    st[5] += n
    tok[t, 0], tok[t, 1] = start, n
    tok_hash[t], tok_pow[t] = h, tok_pow[a] * tok_pow[b]
    tok_slots[s] = t
    return t


@kernel()
def _merge_loop(sym, nxt, prv, wid, wcount, slots, pairs, pool, heap, tok, tok_hash, tok_pow,
                tok_slots, arena, merges, positions, st, vocab_size, min_frequency, budget):
    # Runs up to ``budget`` merges. Returns (done, arrays that may have been reallocated).
    done = False
    for _ in range(budget):
        if st[3] >= vocab_size:
            done = True
            break
        found = False
        count, pid = 0, 0
        while st[1] > 0:
            count, pid = _heap_pop(heap, st, pairs)
            if pairs[pid, 2] == count:
                found = True
                break
            if pairs[pid, 2] > 0:
                _heap_push(heap, st, pairs, pairs[pid, 2], pid)
        if not found or count < min_frequency:
            done = True
            break
        a, b = pairs[pid, 0], pairs[pid, 1]
        k = 0
        e = pairs[pid, 3]
        while e >= 0:
            pos = pool[e, 0]
            if sym[pos] == a and nxt[pos] >= 0 and sym[nxt[pos]] == b:
                positions[k] = pos
                k += 1
            e = pool[e, 1]
        pairs[pid, 3] = -1
        if a == b:  # overlapping occurrences must merge left to right
            positions[:k].sort()
        pairs = _grow(pairs, st[0] + 2 * k)
        pool = _grow(pool, st[2] + 2 * k)
        heap = _grow(heap, st[1] + 2 * k)
        slots = _fit_slots(slots, pairs, st[0] + 2 * k)
        arena = _grow(arena, st[5] + tok[a, 1] + tok[b, 1])
        merges = _grow(merges, st[4] + 1)
        new = _token_for(a, b, tok, tok_hash, tok_pow, tok_slots, arena, st)
        merges[st[4], 0], merges[st[4], 1], merges[st[4], 2] = a, b, new
        st[4] += 1
        step = st[6]
        st[6] += 1
        touched = 0
        for q in range(k):
            i = positions[q]
            j = nxt[i]
            if sym[i] != a or j < 0 or sym[j] != b:
                continue
            w = wcount[wid[i]]
            after = nxt[j]
            sym[i] = new
            sym[j] = -1
            nxt[i] = after
            pairs[pid, 2] -= w
            left = prv[i]
            if left >= 0:
                _add_count(slots, pairs, pool, st, sym[left], a, -w, -1)
                p = _add_count(slots, pairs, pool, st, sym[left], new, w, left)
                if pairs[p, 4] != step:
                    pairs[p, 4] = step
                    positions[k + touched] = p
                    touched += 1
            if after >= 0:
                prv[after] = i
                _add_count(slots, pairs, pool, st, b, sym[after], -w, -1)
                p = _add_count(slots, pairs, pool, st, new, sym[after], w, i)
                if pairs[p, 4] != step:
                    pairs[p, 4] = step
                    positions[k + touched] = p
                    touched += 1
        for q in range(k, k + touched):
            p = positions[q]
            _heap_push(heap, st, pairs, pairs[p, 2], p)
    return done, slots, pairs, pool, heap, arena, merges


def _build_words(data: np.ndarray, offsets: np.ndarray):
    n = len(data)
    word_of = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    nxt = np.arange(1, n + 1, dtype=np.int64)
    prv = np.arange(-1, n - 1, dtype=np.int64)
    nxt[offsets[1:] - 1] = -1
    prv[offsets[:-1]] = -1
    return data.astype(np.int64), nxt, prv, word_of


def train_merges(data: np.ndarray, offsets: np.ndarray, counts: np.ndarray, vocab_size: int,
                 min_frequency: int = 1, progress: Callable[[int, int], None] | None = None,
                 ) -> list[tuple[int, int, int]]:
    """Ordered merges ``(left, right, result)`` learnt from words given as bytes.

    ``data``: (P,) uint8 words end to end; ``offsets``: (W+1,) where each word starts;
    ``counts``: (W,) occurrences of each word. Ids 0..255 are the bytes; new ids count up from
    256 until ``vocab_size`` ids exist or no pair occurs ``min_frequency`` times.
    ``progress(ids, vocab_size)`` is called as ids are added.
    """
    sym, nxt, prv, wid = _build_words(data, offsets)
    positions = np.empty(3 * len(sym) + 2, np.int64)  # a merge's positions, then touched pairs
    st = np.zeros(7, np.int64)
    st[_NEXT_ID] = 256
    st[_ARENA] = 256
    slots = np.full(1 << 18, -1, np.int64)
    pairs = np.empty((1 << 16, 5), np.int64)
    pool = np.empty((max(len(sym), 16), 2), np.int64)
    heap = np.empty((1 << 16, 2), np.int64)
    _init_pairs(sym, nxt, wid, counts, slots, pairs, pool, heap, st)
    vocab_size = max(vocab_size, 256)
    tok = np.zeros((vocab_size, 2), np.int64)
    tok[:256, 0] = np.arange(256)
    tok[:256, 1] = 1
    tok_hash = np.zeros(vocab_size, np.uint64)
    tok_hash[:256] = np.arange(1, 257, dtype=np.uint64)
    tok_pow = np.full(vocab_size, _HASH_BASE, np.uint64)
    tok_slots = np.full(1 << int(2 * vocab_size).bit_length(), -1, np.int64)
    tok_slots[1:257] = np.arange(256)  # byte t hashes to t + 1: the slot _token_for probes first
    arena = np.empty(1 << 16, np.uint8)
    arena[:256] = np.arange(256)
    merges = np.empty((max(vocab_size - 256, 1), 3), np.int64)
    budget = max(1, (vocab_size - 256) // 100)
    done = False
    while not done:
        done, slots, pairs, pool, heap, arena, merges = _merge_loop(
            sym, nxt, prv, wid, counts, slots, pairs, pool, heap, tok, tok_hash, tok_pow,
            tok_slots, arena, merges, positions, st, vocab_size, min_frequency, budget)
        if progress is not None:
            progress(int(st[_NEXT_ID]), vocab_size)
    return [tuple(row) for row in merges[: st[_NMERGES]].tolist()]

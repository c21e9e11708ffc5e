"""A slow, plainly written BPE trainer and encoder: the oracle for the Numba ones."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise


def train(words: Counter, vocab_size: int, min_frequency: int = 1) -> list[tuple[int, int, int]]:
    """Merges (left, right, result) from ``words`` (bytes -> count), recounting every pair."""
    token_bytes = {t: bytes([t]) for t in range(256)}
    id_of = {b: t for t, b in token_bytes.items()}
    seqs = [(list(w), c) for w, c in sorted(words.items())]
    merges = []
    while len(token_bytes) < vocab_size:
        pair_counts = Counter()
        for seq, c in seqs:
            for pair in pairwise(seq):
                pair_counts[pair] += c
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))
        if pair_counts[best] < min_frequency:
            break
        merged = token_bytes[best[0]] + token_bytes[best[1]]
        new = id_of.get(merged, len(token_bytes))
        token_bytes[new] = merged
        id_of[merged] = new
        merges.append((best[0], best[1], new))
        for seq, _ in seqs:
            i = 0
            while i < len(seq) - 1:
                if (seq[i], seq[i + 1]) == best:
                    seq[i : i + 2] = [new]
                i += 1
    return merges


def encode_chunk(chunk: bytes, merges: list[tuple[int, int, int]]) -> list[int]:
    """BPE of one chunk: repeatedly merge the leftmost pair of lowest rank."""
    rank = {(a, b): (r, t) for r, (a, b, t) in enumerate(merges)}
    ids = list(chunk)
    while True:
        ranks = [rank.get(pair, (float("inf"), 0)) for pair in pairwise(ids)]
        if not ranks or min(ranks)[0] == float("inf"):
            return ids
        i = ranks.index(min(ranks))
        ids[i : i + 2] = [ranks[i][1]]

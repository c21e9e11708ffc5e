"""Pre-tokenization: split text into chunks that BPE merges never cross.

The built-in ``gpt2`` and ``gpt4`` patterns run as hand-written Numba scanners that split exactly
as the ``regex`` module does with the same pattern (tests check this against ``regex`` on
generated text); any other pattern runs through ``regex``. Characters classes come from a table
built once per process by asking ``regex`` itself, so both paths agree on every code point.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import regex

from alphagrad._jit import kernel

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}
_SCANNER_IDS = {GPT2_PATTERN: 0, GPT4_PATTERN: 1}

# Bits of the class table. The eight fold bits mark the code points that match s, d, m, t, l, v,
# e, r under (?i) -- the contraction letters of the gpt4 pattern.
LETTER, NUMBER, SPACE = 1, 2, 4
FOLD_S, FOLD_D, FOLD_M, FOLD_T, FOLD_L, FOLD_V, FOLD_E, FOLD_R = (8 << k for k in range(8))
_APOSTROPHE, _SPACE, _LF, _CR = 39, 32, 10, 13


def resolve_pattern(pattern: str) -> str:
    """The regex for a named pattern ("gpt2", "gpt4") or ``pattern`` itself, checked to compile."""
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"split pattern {pattern!r} does not compile: {err}") from None
    return pattern


@functools.cache
def class_table() -> np.ndarray:
    """uint16 flags for every code point (0..0x10FFFF), taken from the ``regex`` module."""
    everything = "".join(map(chr, range(0x110000)))
    table = np.zeros(0x110000, np.uint16)
    classes = [(LETTER, r"\p{L}"), (NUMBER, r"\p{N}"), (SPACE, r"\s")]
    classes += [(8 << k, f"(?i:{c})") for k, c in enumerate("sdmtlver")]
    for bit, cls in classes:
        for m in regex.finditer(f"(?:{cls})+", everything):
            table[m.start() : m.end()] |= bit
    return table


@kernel()
def _run(cps, table, i, n, bit):
    while i < n and table[cps[i]] & bit:
        i += 1
    return i


@kernel()
def _run_other(cps, table, i, n):
    while i < n and table[cps[i]] & 7 == 0:
        i += 1
    return i


@kernel()
def _space_end(cps, table, i, n, stop_after_newline):
    # \s+(?!\S) then \s+; with stop_after_newline, first \s*[\r\n] (gpt4).
    k = i
    last_newline = -1
    while k < n and table[cps[k]] & 4:
        if cps[k] == 10 or cps[k] == 13:
            last_newline = k
        k += 1
    if stop_after_newline and last_newline >= 0:
        return last_newline + 1
    if k == n or k - i == 1:
        return k
    return k - 1


@kernel()
def _match_gpt2(cps, table, i, n):
    c = cps[i]
    if c == 39 and i + 1 < n:
        d = cps[i + 1]
        if d == 115 or d == 116 or d == 109 or d == 100:  # 's 't 'm 'd
            return i + 2
        if i + 2 < n:
            e = cps[i + 2]
            if (d == 114 and e == 101) or (d == 118 and e == 101) or (d == 108 and e == 108):
                return i + 3
    j = i + 1 if c == 32 else i
    if j < n:
        cls = table[cps[j]] & 7
        if cls == 1 or cls == 2:
            return _run(cps, table, j, n, cls)
        if cls == 0:
            return _run_other(cps, table, j, n)
    return _space_end(cps, table, i, n, False)


@kernel()
def _match_gpt4(cps, table, i, n):
    c = cps[i]
    t = table[c]
    if c == 39 and i + 1 < n:
        t1 = table[cps[i + 1]]
        if t1 & (8 | 16 | 32 | 64):  # s d m t
            return i + 2
        if i + 2 < n:
            t2 = table[cps[i + 2]]
            if (t1 & 128 and t2 & 128) or (t1 & 256 and t2 & 512) or (t1 & 1024 and t2 & 512):
                return i + 3
    if t & 1:
        return _run(cps, table, i, n, 1)
    if c != 10 and c != 13 and not t & 2 and i + 1 < n and table[cps[i + 1]] & 1:
        return _run(cps, table, i + 1, n, 1)
    if t & 2:
        return _run(cps, table, i, min(n, i + 3), 2)
    j = i + 1 if c == 32 else i
    if j < n and table[cps[j]] & 7 == 0:
        k = _run_other(cps, table, j, n)
        while k < n and (cps[k] == 10 or cps[k] == 13):
            k += 1
        return k
    return _space_end(cps, table, i, n, True)


@kernel()
def _split_kernel(cps, doc_ends, table, scanner, byte_ends, doc_chunks):
    # cps: (N,) code points; doc_ends: (D,) where each document stops (no chunk crosses one).
    # Out: byte_ends (N,) UTF-8 offset where each chunk ends; doc_chunks (D,) chunks so far at
    # the end of each document. Returns the chunk count.
    m = 0
    i = 0
    b = 0
    for d in range(doc_ends.shape[0]):
        n = doc_ends[d]
        while i < n:
            j = _match_gpt2(cps, table, i, n) if scanner == 0 else _match_gpt4(cps, table, i, n)
            for k in range(i, j):
                c = cps[k]
                b += 1 if c < 0x80 else (2 if c < 0x800 else (3 if c < 0x10000 else 4))
            byte_ends[m] = b
            m += 1
            i = j
        doc_chunks[d] = m
    return m


def to_utf8(text: str) -> bytes:
    """UTF-8 of ``text``; lone surrogates pass through (they decode back as U+FFFD)."""
    return text.encode("utf-8", "surrogatepass")


def split(docs: list[str], pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UTF-8 bytes of the concatenated ``docs``, the byte offset where each chunk ends, and the
    number of chunks up to the end of each document (no chunk crosses from one into the next).
    ``pattern`` is a resolved regex.

    >>> data, ends, _ = split(["Hello world"], GPT2_PATTERN)
    >>> [bytes(data[a:b]) for a, b in zip([0, *ends[:-1]], ends)]
    [b'Hello', b' world']
    """
    text = "".join(docs)
    data = np.frombuffer(to_utf8(text), np.uint8)
    scanner = _SCANNER_IDS.get(pattern)
    if scanner is not None:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        doc_ends = np.cumsum([len(d) for d in docs], dtype=np.int64)
        byte_ends = np.empty(len(cps), np.int64)
        doc_chunks = np.empty(len(docs), np.int64)
        m = _split_kernel(cps, doc_ends, class_table(), scanner, byte_ends, doc_chunks)
        return data, byte_ends[:m], doc_chunks
    return (data, *_regex_ends(docs, regex.compile(pattern)))


# A custom pattern runs with a time bound: this many seconds per text plus this many per
# character (100,000 characters a second, tens of times slower than any sane pattern runs), so
# one that backtracks catastrophically fails with an error instead of hanging.
_REGEX_SECONDS, _REGEX_SECONDS_PER_CHAR = 1.0, 1e-5


def _matches(compiled: regex.Pattern, doc: str) -> Iterator[regex.Match]:
    seconds = _REGEX_SECONDS + _REGEX_SECONDS_PER_CHAR * len(doc)
    try:
        yield from compiled.finditer(doc, timeout=seconds)
    except TimeoutError:
        raise ValueError(
            f"split pattern {compiled.pattern!r:.80} took over {seconds:.1f} s on a text of "
            f"{len(doc):,} characters: it backtracks catastrophically (nested quantifiers such "
            "as (a|aa)+?); simplify it, or use 'gpt2' or 'gpt4'") from None


def _regex_ends(docs: list[str], compiled: regex.Pattern) -> tuple[np.ndarray, np.ndarray]:
    # Text the pattern skips becomes a chunk of its own, so nothing is ever dropped.
    ends, doc_chunks, b = [], [], 0
    for doc in docs:
        pos = 0
        for m in _matches(compiled, doc):
            if m.start() == m.end():
                continue
            if m.start() > pos:
                b += len(to_utf8(doc[pos : m.start()]))
                ends.append(b)
            b += len(to_utf8(doc[m.start() : m.end()]))
            ends.append(b)
            pos = m.end()
        if pos < len(doc):
            b += len(to_utf8(doc[pos:]))
            ends.append(b)
        doc_chunks.append(len(ends))
    return np.asarray(ends, np.int64), np.asarray(doc_chunks, np.int64)

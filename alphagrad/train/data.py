"""Token data: ``prepare`` turns text into ``train.bin``/``val.bin``; ``TokenDataset`` memory-maps
one; ``BatchSampler`` draws repeatable training batches from it.

    stats = prepare("corpus/", tokenizer, "data/shakespeare")
    train = TokenDataset("data/shakespeare/train.bin")
    train.check_tokenizer(tokenizer)
    sampler = BatchSampler(train, batch_size=12, block_size=64, seed=1337)
    x, y = sampler.next()                          # (B, T) int64 each; y is x shifted by one

A token file is a 128-byte little-endian header, then the tokens (uint16, or uint32 when the
vocabulary has more than 65536 ids):

    offset  field
    0       magic b"AGTOKENS"
    8       u32 format version (1)
    12      u32 bytes per token (2 or 4)
    16      u64 token count
    24      u32 vocabulary size
    28      64 ASCII bytes: the tokenizer's fingerprint (hex)
    92      32 reserved zero bytes
    124     u32 crc32 of bytes 0..124 (in every version, so damage is told from a newer format)
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
import string
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from alphagrad._atomic import atomic_write_text, atomic_writer
from alphagrad.tensor.random import get_rng_state, set_rng_state

MAGIC = b"AGTOKENS"
VERSION = 1
_HEADER = struct.Struct("<8sIIQI64s32xI")
HEADER_SIZE = _HEADER.size  # 128
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_CHUNK_BYTES = 1 << 20  # text is read and tokenized this much at a time
_SPLIT_WINDOW = 1 << 20  # how far from the split point a single document's line break is sought


def token_dtype(vocab_size: int) -> np.dtype:
    """The on-disk dtype for a vocabulary: uint16 up to 65536 ids, else uint32."""
    return _DTYPES[2] if vocab_size <= 65536 else _DTYPES[4]


def _check_fingerprint(fingerprint: Any) -> str:
    if not (isinstance(fingerprint, str) and len(fingerprint) == 64
            and all(c in string.hexdigits for c in fingerprint)):
        raise ValueError(f"tokenizer fingerprint must be 64 hex characters, got {fingerprint!r}")
    return fingerprint


def _check_vocab_size(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) \
            or not 1 <= vocab_size < 2**32:
        raise ValueError(f"vocab_size must be an int in [1, 2**32), got {vocab_size!r}")
    return int(vocab_size)


def _pack_header(count: int, vocab_size: int, fingerprint: str) -> bytes:
    itemsize = token_dtype(vocab_size).itemsize
    head = _HEADER.pack(MAGIC, VERSION, itemsize, count, vocab_size, fingerprint.encode(), 0)
    return head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))


@dataclass(frozen=True)
class TokenHeader:
    count: int
    vocab_size: int
    fingerprint: str
    dtype: np.dtype


def read_header(path: str | Path) -> TokenHeader:
    """Read and verify a token file's header and size; ValueError naming the file if wrong."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
        size = f.seek(0, os.SEEK_END)
    if head[:len(MAGIC)] != MAGIC[:len(head)]:
        raise ValueError(f"{path} is not an alphagrad token file (wrong magic); if it is text, "
                         f"make token files from it with: alphagrad prepare {path} --tokenizer "
                         "TOKENIZER -o DATA_DIR")
    if len(head) < HEADER_SIZE:
        raise ValueError(f"{path} is truncated: {len(head)} bytes, shorter than the "
                         f"{HEADER_SIZE}-byte header; the file may be incomplete, re-run prepare")
    _, version, itemsize, count, vocab_size, fingerprint, crc = _HEADER.unpack(head)
    if zlib.crc32(head[:-4]) != crc:
        raise ValueError(f"{path} has a damaged header (checksum mismatch); re-run prepare")
    if version > VERSION:
        raise ValueError(f"{path} was written by a newer alphagrad (token file version "
                         f"{version}; this one reads up to {VERSION}); upgrade alphagrad")
    if (version != VERSION or itemsize not in _DTYPES or not 0 < vocab_size
            or token_dtype(vocab_size).itemsize != itemsize
            or not all(chr(c) in string.hexdigits for c in fingerprint)):
        raise ValueError(f"{path} has an invalid header (version {version}, {itemsize} bytes per "
                         f"token for vocab_size {vocab_size}); re-run prepare")
    expected = HEADER_SIZE + count * itemsize
    if size < expected:
        raise ValueError(f"{path} is truncated: the header says {count} tokens ({expected} bytes) "
                         f"but the file has {size} bytes; the file may be incomplete, re-run "
                         "prepare")
    if size > expected:
        raise ValueError(f"{path} has {size - expected} unexpected bytes after its {count} "
                         "tokens; re-run prepare")
    return TokenHeader(count, vocab_size, fingerprint.decode("ascii"), _DTYPES[itemsize])


def write_token_file(path: str | Path, tokens: np.ndarray, *, vocab_size: int,
                     fingerprint: str) -> None:
    """Write ``tokens`` (ids in ``[0, vocab_size)``) as a token file, atomically."""
    vocab_size, fingerprint = _check_vocab_size(vocab_size), _check_fingerprint(fingerprint)
    tokens = _checked_ids(tokens, vocab_size, str(path))
    with atomic_writer(path, "wb") as f:
        f.write(_pack_header(len(tokens), vocab_size, fingerprint))
        f.write(tokens.astype(token_dtype(vocab_size)).tobytes())


def bytes_per_token(token_file: str | Path) -> float | None:
    """Text bytes per token of a prepared split (``train.bin``, ``val.bin``), from the
    ``meta.json`` that ``prepare`` wrote beside it; None if it is not there."""
    token_file = Path(token_file)
    path = token_file.parent / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path} is damaged ({e!s:.100}); re-run prepare") from None
    counts = [meta.get(f"{token_file.stem}_{k}") if isinstance(meta, dict) else None
              for k in ("bytes", "tokens")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise ValueError(f"{path} is damaged (no byte and token counts for {token_file.name}); "
                         "re-run prepare")
    nbytes, tokens = counts
    return nbytes / tokens if nbytes and tokens else None


class TokenDataset:
    """A token file, memory-mapped read-only: ``.tokens``, ``.vocab_size``, ``.fingerprint``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header = read_header(self.path)
        self.vocab_size = header.vocab_size
        self.fingerprint = header.fingerprint
        if header.count:
            self.tokens = np.memmap(self.path, dtype=header.dtype, mode="r", offset=HEADER_SIZE,
                                    shape=(header.count,))
        else:  # mmap cannot map zero bytes
            self.tokens = np.empty(0, dtype=header.dtype)

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"TokenDataset({str(self.path)!r}, tokens={len(self)}, vocab_size={self.vocab_size})"

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise ValueError unless ``tokenizer`` is the one this file was prepared with."""
        theirs = tokenizer.fingerprint()
        if theirs != self.fingerprint or tokenizer.vocab_size != self.vocab_size:
            raise ValueError(
                f"{self.path} was prepared with tokenizer {self.fingerprint[:12]} (vocab_size "
                f"{self.vocab_size}), not with the given one, {str(theirs)[:12]} (vocab_size "
                f"{tokenizer.vocab_size}); re-run prepare with this tokenizer")


# ---- prepare ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Document:  # a file, or text given in memory (as UTF-8 bytes)
    name: str
    size: int
    path: Path | None = None
    text: bytes = b""

    def open(self) -> IO[bytes]:
        return io.BytesIO(self.text) if self.path is None else self.path.open("rb")


@dataclass(frozen=True)
class _Piece:  # bytes [start, end) of a document
    doc: _Document
    start: int
    end: int


def _names_a_path(source: str) -> bool:
    return "\n" not in source and "\0" not in source and len(source) < 4096 \
        and os.path.exists(source)


def _documents(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[_Document]:
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    docs: list[_Document] = []
    for i, source in enumerate(sources):
        if isinstance(source, os.PathLike) or (isinstance(source, str) and _names_a_path(source)):
            path = Path(source)
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file()
                               and not any(part.startswith(".") for part in p.relative_to(path).parts))
            elif path.is_file():
                files = [path]
            else:
                raise ValueError(f"prepare: corpus file {path} does not exist")
            docs += [_Document(str(p), p.stat().st_size, path=p) for p in files]
        elif isinstance(source, str):
            text = source.encode("utf-8")
            docs.append(_Document(f"<text {i}>", len(text), text=text))
        else:
            raise TypeError(f"prepare: a source must be text or a path, got "
                            f"{type(source).__name__}")
    if not any(doc.size for doc in docs):
        names = ", ".join(doc.name for doc in docs[:3]) or "no sources"
        raise ValueError(f"prepare: the corpus is empty ({names})")
    return [doc for doc in docs if doc.size]


def _line_break_near(doc: _Document, target: int) -> int:
    """The offset just after the ``\\n`` nearest ``target`` (within a window), strictly inside the
    document; failing that, the character boundary at ``target``."""
    lo = max(target - _SPLIT_WINDOW, 0)
    with doc.open() as f:
        f.seek(lo)
        window = f.read(min(target + _SPLIT_WINDOW, doc.size) - lo)
    breaks = [lo + i + 1 for i in (window.rfind(b"\n", 0, target - lo),
                                   window.find(b"\n", max(target - lo - 1, 0))) if i >= 0]
    breaks = [b for b in breaks if 0 < b < doc.size]
    if breaks:
        return min(breaks, key=lambda b: abs(b - target))
    while target < doc.size and 0x80 <= window[target - lo] < 0xC0:  # UTF-8 continuation byte
        target += 1
    return target


def _split(docs: list[_Document], val_fraction: float, seed: int) -> tuple[list, list, str]:
    """(train pieces, val pieces, "documents" or "bytes"): whole documents by a seeded shuffle
    when that comes within a factor of two of ``val_fraction`` of the bytes, else (one
    document, or a few of very different sizes) a cut at the line break nearest the target."""
    total = sum(doc.size for doc in docs)
    if len(docs) > 1:
        target = val_fraction * total
        val: set[int] = set()
        val_size = 0
        for i in np.random.default_rng(seed).permutation(len(docs)):
            size = docs[i].size
            if len(val) < len(docs) - 1 and (
                    not val or abs(val_size + size - target) < abs(val_size - target)):
                val.add(int(i))
                val_size += size
        if val_fraction / 2 <= val_size / total <= 2 * val_fraction:
            pieces = [_Piece(doc, 0, doc.size) for doc in docs]
            return ([p for i, p in enumerate(pieces) if i not in val],
                    [p for i, p in enumerate(pieces) if i in val], "documents")
    target, start = round(total * (1 - val_fraction)), 0
    for i, doc in enumerate(docs):
        if start + doc.size >= target:
            break
        start += doc.size
    cut = _line_break_near(doc, target - start)
    train = [_Piece(d, 0, d.size) for d in docs[:i]] + [_Piece(doc, 0, cut)]
    val = [_Piece(doc, cut, doc.size)] + [_Piece(d, 0, d.size) for d in docs[i + 1:]]
    return train, val, "bytes"


def _read_chunks(piece: _Piece) -> Iterator[tuple[str, int]]:
    """(text, bytes read) for a piece, a chunk at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with piece.doc.open() as f:
        f.seek(piece.start)
        pos = piece.start
        while pos < piece.end:
            block = f.read(min(_CHUNK_BYTES, piece.end - pos))
            if not block:
                raise ValueError(f"prepare: {piece.doc.name} changed while it was being read")
            pos += len(block)
            try:
                yield decoder.decode(block, final=pos >= piece.end), len(block)
            except UnicodeDecodeError as e:
                raise ValueError(f"prepare: {piece.doc.name} is not UTF-8 text (bad byte near "
                                 f"offset {pos - len(block) + e.start})") from None


def _piece_ids(piece: _Piece, tokenizer: Any) -> Iterator[tuple[list[int], int]]:
    """(ids, bytes read) of a piece a chunk at a time, together ``tokenizer.encode`` of its whole
    text: each chunk is cut where the ids cannot depend on what follows (``stable_prefix``) and
    the rest carried into the next, encoded after the first through ``encode_continuation``
    where the tokenizer has one (SentencePiece puts a ``▁`` before a text, not before each
    block). A tokenizer without ``stable_prefix`` gets the whole text."""
    stable_prefix = getattr(tokenizer, "stable_prefix", lambda text: 0)
    encode, continuation = tokenizer.encode, getattr(tokenizer, "encode_continuation",
                                                     tokenizer.encode)
    carry = ""
    for text, nbytes in _read_chunks(piece):
        carry += text
        cut = stable_prefix(carry)
        yield (encode(carry[:cut]) if cut else []), nbytes
        if cut:
            encode = continuation
        carry = carry[cut:]
    if carry:
        yield encode(carry), 0


def _separator_id(tokenizer: Any, separator: str | None) -> int | None:
    if separator is None:
        return None
    specials = getattr(tokenizer, "special_tokens", {})
    if separator not in specials:
        raise ValueError(f"prepare: separator {separator!r} is not a special token of the "
                         f"tokenizer (it has {sorted(specials) or 'none'})")
    return specials[separator]


def _checked_ids(ids: Any, vocab_size: int, name: str) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise ValueError(f"{name}: token id {bad} is outside [0, vocab_size={vocab_size})")
    return ids


def prepare(sources: str | os.PathLike | Iterable[str | os.PathLike], tokenizer: Any,
            out_dir: str | Path, val_fraction: float = 0.1, seed: int = 0,
            progress: Callable[[int, int], None] | None = None,
            separator: str | None | Literal["auto"] = "auto") -> dict:
    """Tokenize a corpus into ``out_dir/train.bin`` and ``out_dir/val.bin`` (plus ``meta.json``).

    ``sources`` is text, a path (a folder means every non-hidden file in it), or an iterable of
    them, each one document; a ``str`` is a path if such a file exists, else text. With several
    documents, whole documents go to validation by a seeded shuffle until it holds about
    ``val_fraction`` of the UTF-8 bytes (each split keeps at least one); when whole documents
    cannot come within a factor of two of that (a single document, or a few), the documents are
    cut at the line break nearest ``1 - val_fraction`` of their bytes instead (``split_by``:
    ``"bytes"`` in the result). Each document's ids are exactly
    ``tokenizer.encode(text)``, computed a chunk at a time so memory stays flat.

    ``separator``, a special token of the tokenizer, follows every document (as nanoGPT's
    ``<|endoftext|>``); ``"auto"`` (the default) is the tokenizer's end-of-text token when it has
    one, else none. Returns the statistics also written to ``meta.json``.

    >>> prepare("input.txt", tok, "data/tiny")["train_tokens"]
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"prepare: val_fraction must be in (0, 1), got {val_fraction!r}")
    vocab_size = _check_vocab_size(tokenizer.vocab_size)
    fingerprint = _check_fingerprint(tokenizer.fingerprint())
    dtype = token_dtype(vocab_size)
    if separator == "auto":
        separator = getattr(tokenizer, "end_of_text", None)
    separator_id = _separator_id(tokenizer, separator)
    docs = _documents(sources)
    train, val, split_by = _split(docs, val_fraction, seed)
    splits = {"train": train, "val": val}
    total = sum(p.end - p.start for pieces in splits.values() for p in pieces)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {"vocab_size": vocab_size, "dtype": dtype.name,
                             "fingerprint": fingerprint, "documents": len(docs),
                             "split_by": split_by,
                             "separator": separator, "separator_id": separator_id}
    done, started = 0, time.perf_counter()
    with contextlib.ExitStack() as stack:  # both files appear together, or neither changes
        for split, pieces in splits.items():
            f = stack.enter_context(atomic_writer(out_dir / f"{split}.bin", "wb"))
            f.write(bytes(HEADER_SIZE))
            count = 0
            for piece in pieces:
                for ids, nbytes in _piece_ids(piece, tokenizer):
                    ids = _checked_ids(ids, vocab_size, piece.doc.name)
                    f.write(ids.astype(dtype).tobytes())
                    count += len(ids)
                    done += nbytes
                    if progress is not None and nbytes:
                        progress(done, total)
                if separator_id is not None and piece.start < piece.end == piece.doc.size:
                    f.write(np.array([separator_id], dtype).tobytes())
                    count += 1
            if count < 2:
                names = ", ".join(sorted({p.doc.name for p in pieces}))
                raise ValueError(f"prepare: the {split} split ({names}) has {count} tokens; it "
                                 "needs at least 2 (use a larger corpus or another val_fraction)")
            f.seek(0)
            f.write(_pack_header(count, vocab_size, fingerprint))
            stats |= {f"{split}_tokens": count, f"{split}_documents": len(pieces),
                      f"{split}_bytes": sum(p.end - p.start for p in pieces)}
    stats["seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_text(out_dir / "meta.json", json.dumps(stats, indent=2) + "\n")
    if hasattr(tokenizer, "save"):  # the data's own tokenizer travels with it
        tokenizer.save(out_dir / "tokenizer.json")
    return stats


# ---- batches ---------------------------------------------------------------------------

def windows(dataset: TokenDataset, offsets: np.ndarray,
            block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 (B, block_size): the windows of ``dataset`` starting at ``offsets`` (B,), y
    one token ahead of x."""
    rows = dataset.tokens[offsets[:, None] + np.arange(block_size + 1)].astype(np.int64)  # (B, T+1)
    # The body is mapped, not scanned on opening (a file may be gigabytes): each window is checked
    # against the header's vocab_size as it is read.
    if rows.size and rows.max() >= dataset.vocab_size:
        b, t = np.unravel_index(np.argmax(rows), rows.shape)
        raise ValueError(f"{dataset.path}: token {int(offsets[b]) + int(t)} is id {rows[b, t]}, "
                         f"outside the file's vocab_size {dataset.vocab_size}; re-run prepare")
    return np.ascontiguousarray(rows[:, :-1]), np.ascontiguousarray(rows[:, 1:])  # (B, T) each


def _check_sizes(dataset: TokenDataset, batch_size: int, block_size: int) -> None:
    for name, value in (("batch_size", batch_size), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if len(dataset) < block_size + 1:
        raise ValueError(f"{dataset.path} has {len(dataset)} tokens; block_size {block_size} "
                         f"needs at least {block_size + 1}")


class BatchSampler:
    """Random windows of a dataset, from its own seeded generator, so a run can be resumed.

    Data-parallel ranks share the generator and each takes its own rows of every batch, so the
    global batch, and the sampler's state, do not depend on the number of ranks.

        sampler = BatchSampler(train, batch_size=12, block_size=64, seed=1337)
        x, y = sampler.next()                  # y[b, t] == x[b, t + 1] within a window
        saved = sampler.state_dict()           # ... later: sampler.load_state_dict(saved)
    """

    def __init__(self, dataset: TokenDataset, batch_size: int, block_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        _check_sizes(dataset, batch_size, block_size)
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} does not split evenly over {world_size} "
                             f"ranks; use a multiple of {world_size}")
        self.dataset, self.batch_size, self.block_size = dataset, batch_size, block_size
        self.seed = seed
        self.batches_drawn = 0
        self._rng = np.random.Generator(np.random.PCG64(seed))
        share = batch_size // world_size
        self._rows = slice(rank * share, (rank + 1) * share)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next (x, y) batch, int64 arrays of shape (batch_size, block_size); with
        ``world_size`` ranks, this rank's rows of it, (batch_size / world_size, block_size)."""
        high = len(self.dataset) - self.block_size
        offsets = self._rng.integers(0, high, size=self.batch_size)  # (B,), the same on every rank
        self.batches_drawn += 1
        return windows(self.dataset, offsets[self._rows], self.block_size)

    __next__ = next

    def __iter__(self) -> BatchSampler:
        return self

    def state_dict(self) -> dict:
        """Plain data (big integers as strings) from which ``load_state_dict`` resumes exactly."""
        return {"seed": self.seed, "batches_drawn": self.batches_drawn,
                "rng": get_rng_state(self._rng)}

    def load_state_dict(self, state: dict) -> None:
        try:
            generator = np.random.Generator(np.random.PCG64())
            set_rng_state(state["rng"], generator)
            batches_drawn = int(state["batches_drawn"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"BatchSampler.load_state_dict: not a sampler state ({e!r})") from None
        self._rng, self.batches_drawn, self.seed = generator, batches_drawn, state.get("seed")


def iter_eval_batches(dataset: TokenDataset, batch_size: int, block_size: int,
                      max_batches: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The same ``max_batches`` (x, y) batches every time: windows spread evenly over the data.

    >>> val_loss = np.mean([loss(model, x, y) for x, y in iter_eval_batches(val, 12, 64, 20)])
    """
    _check_sizes(dataset, batch_size, block_size)
    if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1:
        raise ValueError(f"max_batches must be a positive int, got {max_batches!r}")
    last = len(dataset) - block_size - 1
    offsets = np.linspace(0, last, batch_size * max_batches).round().astype(np.int64)
    for b in range(max_batches):
        yield windows(dataset, offsets[b * batch_size:(b + 1) * batch_size], block_size)

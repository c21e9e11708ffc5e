"""What every tokenizer shares: the file format, fingerprints and text stats."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import regex

from alphagrad._atomic import atomic_write_bytes
from alphagrad.tokenizers.chat import ChatTemplate

FORMAT = "alphagrad.tokenizer"
VERSION = 1


def canonical_json(d: dict) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def read_json(path: str | os.PathLike) -> object:
    """Parsed JSON of ``path``, or a ValueError naming the file and what is wrong."""
    where = f"tokenizer file {os.fspath(path)!r}"
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{where}: cannot read ({err.strerror})") from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} is damaged or not JSON: {err}") from None
    except RecursionError:
        raise ValueError(f"{where} is nested too deeply to be a tokenizer") from None


def check_header(d: object, kind: str | None = None) -> dict:
    """``d`` as an alphagrad tokenizer dict of a supported version (and ``kind``, if given)."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"not an alphagrad tokenizer (expected format {FORMAT!r})")
    if d.get("version") != VERSION:
        raise ValueError(f"tokenizer format version {d.get('version')!r} is not supported "
                         f"(this alphagrad reads version {VERSION}); upgrade alphagrad")
    if kind is not None and d.get("kind") != kind:
        raise ValueError(f"tokenizer kind is {d.get('kind')!r}, expected {kind!r}")
    return d


# A piece of text ending this many characters before the end of what is known is final: the
# split patterns decide a piece from at most a couple of characters past its end (GPT-2's and
# GPT-4's look one character ahead, in "\s+(?!\S)"), so more text cannot change it.
CUT_MARGIN = 64


def stable_cut(piece_ends: np.ndarray, length: int) -> int:
    """The end of the last piece (``piece_ends`` ascending) that ends ``CUT_MARGIN`` or more
    characters before ``length``, or 0: text up to there encodes the same whatever follows."""
    k = int(np.searchsorted(piece_ends, length - CUT_MARGIN, side="right"))
    return int(piece_ends[k - 1]) if k else 0


def encode_with_specials(text: str, special_tokens: dict[str, int],
                         allowed_special: str | Iterable[str],
                         encode_piece: Callable[[str, bool], list[int]]) -> list[int]:
    """Ids of ``text``: the special tokens ``allowed_special`` lists (``"all"``: every one) as
    their ids, the text around them through ``encode_piece(text, at_start)``. A listed token
    that is not special is a ValueError."""
    if allowed_special == "all":
        allowed = special_tokens
    else:
        if isinstance(allowed_special, str):
            allowed_special = [allowed_special]
        unknown = [s for s in allowed_special if s not in special_tokens]
        if unknown:
            raise ValueError(f"encode: {unknown} are not special tokens of this tokenizer "
                             f"(it has {sorted(special_tokens)})")
        allowed = {s: special_tokens[s] for s in allowed_special}
    if not allowed:
        return encode_piece(text, True)
    alternatives = "|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True))
    ids: list[int] = []
    for k, part in enumerate(regex.split(f"({alternatives})", text)):
        if k % 2:
            ids.append(allowed[part])
        elif part:
            ids += encode_piece(part, k == 0)
    return ids


def join_token_bytes(token_bytes: dict[int, bytes], ids: Iterable[int], vocab_size: int) -> bytes:
    """The bytes of ``ids`` from an id -> bytes table; an id not in it is an IndexError."""
    try:
        return b"".join(map(token_bytes.__getitem__, ids))
    except KeyError as err:
        raise IndexError(f"decode: id {err.args[0]!r} is not in this vocabulary "
                         f"(size {vocab_size})") from None


# The names an end-of-text (document separator) special token goes by, likeliest first.
END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "</s>", "<eos>")


class Tokenizer:
    """Base class: subclasses define ``kind``, ``encode``, ``decode``, ``vocab_size`` and
    ``to_dict``; those with special tokens keep them in ``special_tokens`` (text -> id).
    ``chat_template`` (a ``ChatTemplate`` or None) is saved with the tokenizer."""

    kind: str = ""
    special_tokens: dict[str, int] = {}  # noqa: RUF012 (never mutated: subclasses set their own)
    chat_template: ChatTemplate | None = None

    @property
    def end_of_text(self) -> str | None:
        """The special token that ends a document (``<|endoftext|>`` or the like), if any."""
        return next((s for s in END_OF_TEXT if s in self.special_tokens), None)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def _header(self) -> dict:
        header = {"format": FORMAT, "version": VERSION, "kind": self.kind}
        if self.chat_template is not None:
            header["chat_template"] = self.chat_template.to_dict()
        return header

    def _with_extras(self, d: dict) -> Tokenizer:
        """``self`` with the optional fields of its dict ``d`` (the chat template) applied."""
        if d.get("chat_template") is not None:
            self.chat_template = ChatTemplate.from_dict(d["chat_template"])
        return self

    def fingerprint(self) -> str:
        """Hex sha256 of the canonical content: equal for tokenizers that encode alike (the
        chat template is left out: it changes no token)."""
        content = {k: v for k, v in self.to_dict().items() if k != "chat_template"}
        return hashlib.sha256(canonical_json(content)).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to ``path`` (JSON), atomically."""
        atomic_write_bytes(path, canonical_json(self.to_dict()))

    def stats(self, text: str) -> dict[str, float]:
        """Compression on ``text`` (say a held-out split): bytes, characters, words per token."""
        ids = self.encode(text)
        tokens = max(len(ids), 1)
        return {
            "tokens": len(ids),
            "bytes_per_token": len(text.encode("utf-8", "surrogatepass")) / tokens,
            "chars_per_token": len(text) / tokens,
            "tokens_per_word": len(ids) / max(len(text.split()), 1),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

"""Tokenizers: byte-level BPE (trainer + encoder, tiktoken and Hugging Face interop), char, word.

>>> from alphagrad.tokenizers import BPETokenizer
>>> tok = BPETokenizer.train("the cat sat on the mat " * 20, vocab_size=270, pattern="gpt2")
>>> tok.decode(tok.encode("the cat")) == "the cat"
True
"""

from __future__ import annotations

import os

from alphagrad.tokenizers.base import Tokenizer, check_header, read_json
from alphagrad.tokenizers.bpe import BPETokenizer
from alphagrad.tokenizers.chat import PLAIN, ChatTemplate
from alphagrad.tokenizers.vocab import CharTokenizer, WordTokenizer

KINDS: dict[str, type[Tokenizer]] = {"bpe": BPETokenizer, "char": CharTokenizer,
                                     "word": WordTokenizer}


def from_dict(d: dict) -> Tokenizer:
    """Rebuild any tokenizer from its ``to_dict()``."""
    check_header(d)
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r} (known: {sorted(KINDS)})")
    return KINDS[kind].from_dict(d)


def load(path: str | os.PathLike) -> Tokenizer:
    """Open any alphagrad tokenizer file (or a Hugging Face byte-level BPE ``tokenizer.json``)."""
    d = read_json(path)
    if isinstance(d, dict) and "model" in d and "format" not in d:
        return BPETokenizer.from_huggingface(path)
    try:
        return from_dict(d)
    except ValueError as err:
        raise ValueError(f"tokenizer file {os.fspath(path)!r}: {err}") from None


__all__ = ["PLAIN", "BPETokenizer", "CharTokenizer", "ChatTemplate", "Tokenizer", "WordTokenizer",
           "from_dict", "load"]

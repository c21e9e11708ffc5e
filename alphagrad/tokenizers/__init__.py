"""Tokenizers: byte-level BPE (trainer + encoder, tiktoken and Hugging Face interop),
SentencePiece-style BPE read from Hugging Face files, char, word.

>>> from alphagrad.tokenizers import BPETokenizer
>>> tok = BPETokenizer.train("the cat sat on the mat " * 20, vocab_size=270, pattern="gpt2")
>>> tok.decode(tok.encode("the cat")) == "the cat"
True
"""

from __future__ import annotations

import os
from pathlib import Path

from alphagrad.tokenizers import interop
from alphagrad.tokenizers.base import Tokenizer, check_header, read_json
from alphagrad.tokenizers.bpe import BPETokenizer, with_chat_template
from alphagrad.tokenizers.chat import PLAIN, ChatTemplate
from alphagrad.tokenizers.sentencepiece import SentencePieceBPE
from alphagrad.tokenizers.vocab import CharTokenizer, WordTokenizer

KINDS: dict[str, type[Tokenizer]] = {"bpe": BPETokenizer, "char": CharTokenizer,
                                     "word": WordTokenizer, "sentencepiece-bpe": SentencePieceBPE}


def from_dict(d: dict) -> Tokenizer:
    """Rebuild any tokenizer from its ``to_dict()``."""
    check_header(d)
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r} (known: {sorted(KINDS)})")
    return KINDS[kind].from_dict(d)


def _huggingface_class(d: object) -> type[BPETokenizer | SentencePieceBPE]:
    return SentencePieceBPE if interop.is_sentencepiece(d) else BPETokenizer


def load(path: str | os.PathLike) -> Tokenizer:
    """Open any alphagrad tokenizer file, or a Hugging Face ``tokenizer.json`` (byte-level BPE,
    or SentencePiece-style BPE with byte fallback)."""
    d = read_json(path)
    if isinstance(d, dict) and "model" in d and "format" not in d:
        return _huggingface_class(d).from_huggingface(path, d)
    try:
        return from_dict(d)
    except ValueError as err:
        raise ValueError(f"tokenizer file {os.fspath(path)!r}: {err}") from None


def from_pretrained(folder: str | os.PathLike) -> BPETokenizer | SentencePieceBPE:
    """The tokenizer of a Hugging Face model folder (``tokenizer.json``, with the chat template
    of ``tokenizer_config.json``), of whichever BPE form it is."""
    path = Path(folder) / "tokenizer.json"
    d = read_json(path)
    return with_chat_template(_huggingface_class(d).from_huggingface(path, d), folder)


__all__ = ["PLAIN", "BPETokenizer", "CharTokenizer", "ChatTemplate", "SentencePieceBPE",
           "Tokenizer", "WordTokenizer", "from_dict", "from_pretrained", "load"]

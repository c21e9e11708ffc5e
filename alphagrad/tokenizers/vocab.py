"""Character and word tokenizers: a fixed vocabulary of the most frequent units plus ``<unk>``."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import regex

from alphagrad.tokenizers.base import Tokenizer, check_header, read_json, stable_cut

UNK = "<unk>"
_WORD = regex.compile(r"\w+|[^\w\s]|\s+")


class VocabTokenizer(Tokenizer):
    """Maps each unit of text (``split``) to an id; id 0 is ``<unk>`` for units not in the
    vocabulary, which decodes as the text ``<unk>``."""

    def __init__(self, tokens: list[str]) -> None:
        if not tokens or tokens[0] != UNK or len(set(tokens)) != len(tokens):
            raise ValueError(f"{self.kind} tokenizer: tokens must be distinct and start "
                             f"with {UNK!r}")
        self.tokens = list(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        self.vocab_size = len(self.tokens)

    @staticmethod
    def split(text: str) -> list[str]:
        raise NotImplementedError

    def stable_prefix(self, text: str) -> int:
        """How many leading characters of ``text`` encode the same whatever text follows (a
        long document is encoded a block at a time, cut there, with unchanged ids)."""
        return stable_cut(np.cumsum([len(unit) for unit in self.split(text)]), len(text))

    @classmethod
    def train(cls, text: str, vocab_size: int | None = None, min_frequency: int = 1):
        """Keep the units seen at least ``min_frequency`` times, the most frequent first, up to
        ``vocab_size`` ids including ``<unk>`` (ties: the unit that sorts first)."""
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
            raise ValueError(f"train: vocab_size must be a positive int or None, "
                             f"got {vocab_size!r}")
        if not text:
            raise ValueError("train: the corpus is empty: there is no text to learn from")
        counts = Counter(cls.split(text))
        counts.pop(UNK, None)
        kept = sorted((u for u, c in counts.items() if c >= min_frequency),
                      key=lambda u: (-counts[u], u))
        if vocab_size is not None:
            kept = kept[: vocab_size - 1]
        return cls([UNK, *sorted(kept)])

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.get(u, 0) for u in self.split(text)]

    def decode(self, ids: list[int]) -> str:
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise IndexError(f"decode: id {bad[0]} is not in this vocabulary "
                             f"(size {self.vocab_size})")
        return "".join(map(self.tokens.__getitem__, ids))

    def stats(self, text: str) -> dict[str, float]:
        """Compression plus ``coverage`` (share of distinct units in the vocabulary) and
        ``oov_rate`` (share of tokens that are ``<unk>``)."""
        units = self.split(text)
        distinct = set(units)
        out = super().stats(text)
        out["coverage"] = sum(u in self._ids for u in distinct) / max(len(distinct), 1)
        out["oov_rate"] = sum(u not in self._ids for u in units) / max(len(units), 1)
        return out

    def to_dict(self) -> dict:
        return {**self._header(), "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict):
        check_header(d, cls.kind)
        tokens = d.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{cls.kind} tokenizer: 'tokens' must be a list of strings")
        return cls(tokens)._with_extras(d)

    @classmethod
    def load(cls, path: str | os.PathLike):
        try:
            return cls.from_dict(read_json(path))
        except ValueError as err:
            raise ValueError(f"tokenizer file {os.fspath(path)!r}: {err}") from None


class CharTokenizer(VocabTokenizer):
    """One token per character.

    >>> tok = CharTokenizer.train("hello")
    >>> tok.encode("hex")
    [2, 1, 0]
    """

    kind = "char"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    def stable_prefix(self, text: str) -> int:
        return len(text)  # each character is a token of its own


class WordTokenizer(VocabTokenizer):
    """One token per word, punctuation mark or whitespace run.

    >>> tok = WordTokenizer.train("the cat, the hat")
    >>> tok.decode(tok.encode("the dog, the cat"))
    'the <unk>, the cat'
    """

    kind = "word"

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(text)

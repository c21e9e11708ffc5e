"""SentencePiece-style BPE with byte fallback, as Hugging Face stores Llama 2's and TinyLlama's
``tokenizer.json``: spaces are ``▁``, a ``▁`` is put before the text, tokens are merged from
characters by ranked merges, and a character missing from the vocabulary becomes its UTF-8
bytes as ``<0xNN>`` tokens.

It encodes through the byte-level BPE encoder, on an equivalent byte-level form of the
vocabulary built when it loads:
- ``▁`` is the byte of a space (the text's own ``▁`` encodes as a space would, as in the
  original, where spaces become ``▁``);
- a byte is the token of its character where that is an ASCII character in the vocabulary, else
  its ``<0xNN>`` token;
- a character of several bytes in the vocabulary is made from its bytes by merges ranked before
  all others, through ids past the vocabulary for its leading bytes. Those never meet another
  merge, so an id past the vocabulary left in the output is the start of a character missing
  from the vocabulary, and becomes its ``<0xNN>`` tokens, as the byte fallback does;
- the text is cut before each run of spaces that follows other text (``split``: before each
  space): no token spans such a cut (checked on loading), so no merge is lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from alphagrad._atomic import atomic_write_bytes
from alphagrad.tokenizers import interop
from alphagrad.tokenizers.base import (
    Tokenizer,
    check_header,
    encode_with_specials,
    join_token_bytes,
    read_json,
)
from alphagrad.tokenizers.bpe import (
    BPETokenizer,
    _in_file,
    _special_tokens,
    to_folder,
    with_chat_template,
)

SPACE = "▁"
PREPEND = ("segments", "first", "always", "never")  # which pieces of text get a leading ▁
# pieces the encoder merges within: runs of spaces stay with the text after them; with split,
# each space starts a piece of its own
_PIECES = {False: r" *[^ ]+| +", True: r"[^ ]+| [^ ]*"}


class SentencePieceBPE(Tokenizer):
    """A SentencePiece-style BPE tokenizer with byte fallback (Llama 2's, TinyLlama's).

    ``vocab`` maps token text to id, ``merges`` are ranked (left, right) pairs of token text,
    ``prepend`` says which pieces of text get a leading ``▁`` (``"segments"``: every piece
    between special tokens, as a ``Prepend`` normalizer does; ``"first"``: the text's start
    unless it starts with a space; ``"always"``: every piece unless it starts with a space;
    ``"never"``), ``split`` whether each space starts a piece of its own, ``strip`` whether
    ``decode`` drops one leading space, ``bos_token`` the token Hugging Face puts first (kept
    for export; ``encode`` does not add it).
    """

    kind = "sentencepiece-bpe"

    def __init__(self, vocab: dict[str, int], merges: Iterable[tuple[str, str]],
                 special_tokens: dict[str, int] | None = None, prepend: str = "segments",
                 split: bool = False, strip: bool = True, bos_token: str | None = None) -> None:
        if not isinstance(vocab, dict) or not all(
                isinstance(t, str) and isinstance(i, int) and not isinstance(i, bool) and i >= 0
                for t, i in vocab.items()):
            raise ValueError("vocab must map token text to non-negative int ids")
        if len(set(vocab.values())) != len(vocab):
            raise ValueError("two tokens of the vocabulary share an id")
        if prepend not in PREPEND:
            raise ValueError(f"prepend must be one of {PREPEND}, got {prepend!r}")
        self.vocab, self.prepend, self.split, self.strip = dict(vocab), prepend, bool(split), \
            bool(strip)
        self.merges = [_pair(m, rank) for rank, m in enumerate(merges)]
        self.special_tokens = _special_tokens(special_tokens or {})
        for s, t in self.special_tokens.items():
            if self.vocab.get(s, t) != t:
                raise ValueError(f"special token {s!r} has id {t} but the vocabulary gives it "
                                 f"{self.vocab[s]}")
        self.bos_token = bos_token
        if bos_token is not None and bos_token not in self.special_tokens:
            raise ValueError(f"bos_token {bos_token!r} is not a special token")
        self.vocab_size = max([*self.vocab.values(), *self.special_tokens.values()]) + 1
        self._build_encoder()

    def _build_encoder(self) -> None:
        byte_token = [self.vocab.get(f"<0x{b:02X}>") for b in range(256)]
        missing = [f"<0x{b:02X}>" for b, t in enumerate(byte_token) if t is None]
        if missing:
            raise ValueError(f"byte fallback tokens {missing[:4]} are missing from the "
                             "vocabulary")
        if SPACE not in self.vocab:  # spaces would fall back to the bytes of ▁, not of a space
            raise ValueError(f"the vocabulary has no {SPACE!r} token")
        specials = set(self.special_tokens)
        chars = [t for t in self.vocab if len(t) == 1 and t not in specials and t != " "]
        if not self.split:
            crossing = next((t for t in self.vocab
                             if t not in specials and SPACE in t.lstrip(SPACE)), None)
            if crossing is not None:
                raise ValueError(f"token {crossing!r} has a {SPACE!r} after other text, which "
                                 "this tokenizer does not support")
        byte_ids = list(byte_token)
        for c in chars:
            b = _to_bytes(c)
            if len(b) == 1:
                byte_ids[b[0]] = self.vocab[c]
        merges, partial = [], {}  # partial: leading bytes of a character -> id past the vocab
        next_id = self.vocab_size
        for c in sorted((c for c in chars if len(_to_bytes(c)) > 1), key=lambda c: _to_bytes(c)):
            b = _to_bytes(c)
            left = byte_ids[b[0]]
            for k in range(2, len(b) + 1):
                if k == len(b):
                    made = self.vocab[c]
                elif b[:k] in partial:
                    left = partial[b[:k]]
                    continue
                else:
                    made = partial[b[:k]] = next_id
                    next_id += 1
                merges.append((left, byte_ids[b[k - 1]], made))
                left = made
        bytes_tokens = set(byte_token)
        for rank, (left, right) in enumerate(self.merges):
            ids = [self.vocab.get(t) for t in (left, right, left + right)]
            if None in ids:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) uses a token missing from "
                                 "the vocabulary")
            if ids[0] in bytes_tokens or ids[1] in bytes_tokens:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) merges a byte fallback "
                                 "token, which this tokenizer does not support")
            merges.append(tuple(ids))
        self._encoder = BPETokenizer(merges, _PIECES[self.split], byte_ids=byte_ids)
        self._fallback = {t: [byte_token[x] for x in self._encoder.token_bytes(t)]
                          for t in partial.values()}
        self._bytes = {i: bytes([int(t[3:5], 16)]) if i in bytes_tokens else _to_bytes(t)
                       for t, i in self.vocab.items()}
        self._bytes.update({i: s.encode() for s, i in self.special_tokens.items()})

    # ------------------------------------------------------------------------- encoding
    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` (one piece: special-token text encodes as ordinary text)."""
        return self._encode_piece(text, first=True)

    def _encode_piece(self, text: str, first: bool) -> list[int]:
        text = text.replace(SPACE, " ")
        if text and (self.prepend == "segments" or (
                not text.startswith(" ") and (self.prepend == "always"
                                              or (self.prepend == "first" and first)))):
            text = " " + text
        return self._ids(text)

    def _ids(self, spaced: str) -> list[int]:
        # the byte-level encoder's ids of text whose ▁ are spaces, leftover leading bytes of a
        # character back to their byte tokens
        ids = self._encoder.encode_ordinary(spaced)
        if any(t >= self.vocab_size for t in ids):
            ids = [x for t in ids for x in self._fallback.get(t, (t,))]
        return ids

    def stable_prefix(self, text: str) -> int:
        """How many leading characters of ``text`` encode the same whatever text follows, the
        rest then through ``encode_continuation`` (a long document is encoded a block at a
        time). A ``▁`` put before the text joins its first piece, so the cuts after it are the
        same with or without one."""
        return self._encoder.stable_prefix(text.replace(SPACE, " "))

    def encode_continuation(self, text: str) -> list[int]:
        """Ids of ``text`` where it continues text already encoded (after a ``stable_prefix``
        cut): nothing is put before it."""
        return self._ids(text.replace(SPACE, " "))

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """Ids of ``text``, without a bos token. Special tokens map to their ids only when listed
        in ``allowed_special`` (or it is ``"all"``); otherwise their text encodes as ordinary
        text."""
        return encode_with_specials(text, self.special_tokens, allowed_special,
                                    self._encode_piece)

    def encode_batch(self, texts: Iterable[str], num_threads: int | None = None,
                     allowed_special: str | Iterable[str] = ()) -> list[list[int]]:
        """``encode`` of each text (``num_threads`` is accepted for the byte-level API)."""
        return [self.encode(t, allowed_special) for t in texts]

    # ------------------------------------------------------------------------- decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for (spaces for ``▁``, nothing stripped)."""
        return join_token_bytes(self._bytes, ids, self.vocab_size)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` as Hugging Face decodes it: the leading space of the text's first
        ``▁`` dropped (if ``strip``), bytes that are not valid UTF-8 as U+FFFD."""
        text = self.decode_bytes(ids).decode("utf-8", errors="replace")
        return text[1:] if self.strip and text.startswith(" ") else text

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode_bytes([token_id])

    # ------------------------------------------------------------------------- files
    def to_dict(self) -> dict:
        return {**self._header(), "vocab": self.vocab, "merges": [list(m) for m in self.merges],
                "special_tokens": self.special_tokens, "prepend": self.prepend,
                "split": self.split, "strip": self.strip, "bos_token": self.bos_token}

    @classmethod
    def from_dict(cls, d: dict) -> SentencePieceBPE:
        check_header(d, cls.kind)
        try:
            tokenizer = cls(d["vocab"], d["merges"], d["special_tokens"], d["prepend"],
                            d["split"], d["strip"], d["bos_token"])
        except KeyError as err:
            raise ValueError(f"{cls.kind} tokenizer is missing the field {err.args[0]!r}") \
                from None
        except (TypeError, AttributeError) as err:
            raise ValueError(f"{cls.kind} tokenizer has a malformed field: {err}") from None
        return tokenizer._with_extras(d)

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike, contents: object = None
                         ) -> SentencePieceBPE:
        """Import a SentencePiece-style BPE ``tokenizer.json`` (``contents``: the file already
        parsed, if the caller read it); ids are kept."""
        try:
            contents = read_json(path) if contents is None else contents
            return cls(**interop.read_sentencepiece(contents))
        except ValueError as err:
            raise _in_file(path, err) from None

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> SentencePieceBPE:
        """The tokenizer of a Hugging Face model folder, with its chat template as
        ``BPETokenizer.from_pretrained`` reads it."""
        return with_chat_template(cls.from_huggingface(Path(folder) / "tokenizer.json"), folder)

    def save_huggingface(self, path: str | os.PathLike) -> None:
        """A ``tokenizer.json`` that Hugging Face ``tokenizers`` loads and encodes identically."""
        d = interop.sentencepiece_dict(self.vocab, self.merges, self.special_tokens,
                                       self.prepend, self.split, self.strip, self.bos_token)
        atomic_write_bytes(path, interop.dumps(d))

    def save_pretrained(self, folder: str | os.PathLike, model_max_length: int | None = None
                        ) -> None:
        """A folder that ``transformers.AutoTokenizer.from_pretrained`` loads."""
        config = interop.huggingface_config(self.end_of_text, model_max_length)
        to_folder(self, folder, {**config, "bos_token": self.bos_token})


def _to_bytes(token: str) -> bytes:
    return token.replace(SPACE, " ").encode("utf-8", "surrogatepass")


def _pair(merge: object, rank: int) -> tuple[str, str]:
    pair = merge.split(" ") if isinstance(merge, str) else merge
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 \
            or not all(isinstance(t, str) for t in pair):
        raise ValueError(f"merge {rank} is {merge!r:.60}; a merge is 'left right' or "
                         "[left, right]")
    return tuple(pair)

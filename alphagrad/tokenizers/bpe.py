"""Byte-level BPE tokenizer: train, encode, decode, save, and trade files with tiktoken and
Hugging Face."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import regex

from alphagrad._atomic import atomic_write_bytes
from alphagrad._cpus import usable_cores
from alphagrad.tokenizers import interop
from alphagrad.tokenizers.base import (
    Tokenizer,
    check_header,
    encode_with_specials,
    join_token_bytes,
    read_json,
    stable_cut,
)
from alphagrad.tokenizers.chat import ChatTemplate
from alphagrad.tokenizers.counting import count_chunks
from alphagrad.tokenizers.encoder import Encoder
from alphagrad.tokenizers.jinja_chat import chat_template_from_jinja
from alphagrad.tokenizers.pretokenize import PATTERNS, resolve_pattern, split
from alphagrad.tokenizers.trainer import train_merges

# Look-behinds and anchors see text before a cut, so the text after it would split differently.
_LOOKS_BEHIND = regex.compile(r"\(\?<[=!]|\\[bBGAZz]|(?<!\[)\^|(?<!\\)\$")


class BPETokenizer(Tokenizer):
    """Byte-level BPE: any text encodes, and decodes back exactly.

    >>> tok = BPETokenizer.train("low lower lowest " * 50, vocab_size=260, pattern="gpt2")
    >>> tok.decode(tok.encode("lowest")) == "lowest"
    True
    """

    kind = "bpe"

    def __init__(self, merges: Iterable[tuple[int, int, int]], pattern: str = "gpt4",
                 special_tokens: dict[str, int] | None = None,
                 byte_ids: Iterable[int] | None = None) -> None:
        self.pattern = resolve_pattern(pattern)
        self.byte_ids = list(range(256)) if byte_ids is None else \
            [_token_id(t, f"byte id {k}") for k, t in enumerate(byte_ids)]
        self.merges = [_merge(m, rank) for rank, m in enumerate(merges)]
        self.special_tokens = _special_tokens(special_tokens or {})
        self._vocab = _derive_vocab(self.byte_ids, self.merges, self.special_tokens)
        self.vocab_size = max(self._vocab) + 1
        merges_array = np.array(self.merges, np.int64).reshape(-1, 3)
        self._encoder = Encoder(merges_array, np.array(self.byte_ids, np.int64))

    @classmethod
    def train(cls, source, vocab_size: int, pattern: str = "gpt4",
              special_tokens: Iterable[str] = (), min_frequency: int = 1,
              progress: Callable[[int, int], None] | None = None,
              num_threads: int | None = None) -> BPETokenizer:
        """Learn merges from ``source`` until ``vocab_size`` ids exist (special tokens included).

        ``source``: a str, an ``os.PathLike`` file (streamed), or an iterable of either; each
        item is a separate document. Ids 0-255 are the bytes, merges follow, special tokens come
        last. ``progress(ids_so_far, vocab_size)`` is called during the merges.
        """
        special_tokens = list(dict.fromkeys(special_tokens))
        if not isinstance(vocab_size, int) or vocab_size < 256 + len(special_tokens):
            raise ValueError(f"train: vocab_size must be an int >= 256 + {len(special_tokens)} "
                             f"special tokens, got {vocab_size!r}")
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"train: min_frequency must be a positive int, got {min_frequency!r}")
        pattern = resolve_pattern(pattern)
        counts = count_chunks(source, pattern, num_threads or usable_cores())
        data, offsets, word_counts = counts.words()
        if not len(word_counts):
            raise ValueError("train: the corpus is empty: there is no text to learn merges from")
        merges = train_merges(data, offsets, word_counts, vocab_size - len(special_tokens),
                              min_frequency, progress)
        first = max((t for _, _, t in merges), default=255) + 1
        specials = {s: first + k for k, s in enumerate(special_tokens)}
        return cls(merges, pattern, specials)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text``, with special-token text encoded as ordinary text."""
        return self._encode_docs([text])[0]

    def _encode_docs(self, texts: list[str]) -> list[list[int]]:
        # One pass over all texts; the chunk counts per text cut the ids apart again.
        data, ends, doc_chunks = split(texts, self.pattern)
        ids, chunk_ids = self._encoder.encode(data, ends)
        stops = np.concatenate([[0], chunk_ids])[doc_chunks].tolist()
        flat = ids.tolist()
        return [flat[a:b] for a, b in zip([0, *stops[:-1]], stops)]

    def stable_prefix(self, text: str) -> int:
        """How many leading characters of ``text`` encode the same whatever text follows (a
        long document is encoded a block at a time, cut there, with unchanged ids).

        The cut is a piece boundary well before the end of ``text`` at which the prefix, split
        on its own, gives the same pieces (a piece can depend on the characters after it, as
        ``\\s+(?!\\S)`` does); the rest then splits from there as it would have, unless the
        pattern looks behind, for which no cut is safe (0).
        """
        if _LOOKS_BEHIND.search(self.pattern):
            return 0
        data, ends, _ = split([text], self.pattern)
        last = int(np.searchsorted(ends, stable_cut(ends, len(data)), side="right"))
        for k in range(last, max(last - 8, 0), -1):  # a few boundaries back, if need be
            prefix = bytes(data[:ends[k - 1]]).decode("utf-8", "surrogatepass")
            _, prefix_ends, _ = split([prefix], self.pattern)
            if np.array_equal(prefix_ends, ends[:k]):
                return len(prefix)
        return 0

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """Ids of ``text``. Special tokens map to their ids only when listed in
        ``allowed_special`` (or it is ``"all"``); otherwise their text encodes as ordinary text.

        >>> tok = BPETokenizer([], "gpt2", {"<|eot|>": 256})
        >>> tok.encode("hi<|eot|>", allowed_special="all")
        [104, 105, 256]
        """
        return encode_with_specials(text, self.special_tokens, allowed_special,
                                    lambda piece, _: self.encode_ordinary(piece))

    def encode_batch(self, texts: Iterable[str], num_threads: int | None = None,
                     allowed_special: str | Iterable[str] = ()) -> list[list[int]]:
        """``encode`` of each text, spread over ``num_threads`` threads (default: the cores this
        process may use)."""
        texts = list(texts)
        encode_group = self._encode_docs
        if allowed_special:
            def encode_group(group: list[str]) -> list[list[int]]:
                return [self.encode(t, allowed_special) for t in group]
        workers = max(1, min(num_threads or usable_cores(), len(texts)))
        # Contiguous groups of about equal size, a few per thread to even out the load.
        sizes = np.cumsum([len(t) for t in texts])
        cuts = np.searchsorted(sizes, np.linspace(0, sizes[-1] if len(texts) else 0,
                                                  4 * workers + 1)[1:-1], side="right")
        groups = [texts[a:b] for a, b in zip([0, *cuts], [*cuts, len(texts)]) if b > a]
        if workers == 1:
            return [ids for group in groups for ids in encode_group(group)]
        with ThreadPoolExecutor(workers) as pool:
            return [ids for out in pool.map(encode_group, groups) for ids in out]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for."""
        return join_token_bytes(self._vocab, ids, self.vocab_size)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode_bytes([token_id])

    def mergeable_ranks(self) -> dict[bytes, int]:
        """Bytes of every non-special token -> its id (tiktoken's ``mergeable_ranks``)."""
        special = set(self.special_tokens.values())
        return {b: t for t, b in sorted(self._vocab.items()) if t not in special}

    def to_dict(self) -> dict:
        return {**self._header(), "pattern": self.pattern, "special_tokens": self.special_tokens,
                "byte_ids": self.byte_ids, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        check_header(d, "bpe")
        try:
            tokenizer = cls(d["merges"], d["pattern"], d["special_tokens"], d["byte_ids"])
        except KeyError as err:
            raise ValueError(f"bpe tokenizer is missing the field {err.args[0]!r}") from None
        except (TypeError, AttributeError) as err:
            raise ValueError(f"bpe tokenizer has a malformed field: {err}") from None
        return tokenizer._with_extras(d)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file ``path`` and a human-readable ``<path>.vocab`` beside it."""
        super().save(path)
        atomic_write_bytes(f"{os.fspath(path)}.vocab", self._vocab_text().encode())

    def _vocab_text(self) -> str:
        show = interop.show_bytes
        lines = [f"# pattern: {self.pattern}"]
        lines += [f"{t}\t{show(self._vocab[t])}" for t in self.byte_ids]
        lines += [f"{t}\t{show(self._vocab[t])}\t= {show(self._vocab[a])} + {show(self._vocab[b])}"
                  for a, b, t in self.merges]
        lines += [f"{t}\t{s}\t(special)" for s, t in self.special_tokens.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        try:
            return cls.from_dict(read_json(path))
        except ValueError as err:
            raise _in_file(path, err) from None

    def save_tiktoken(self, path: str | os.PathLike) -> None:
        """tiktoken's ranks file: one ``base64(token) id`` line per non-special token."""
        atomic_write_bytes(path, interop.tiktoken_text(self.mergeable_ranks()).encode())

    @classmethod
    def from_tiktoken(cls, path: str | os.PathLike, pattern: str = "gpt4",
                      special_tokens: dict[str, int] | None = None) -> BPETokenizer:
        """Import a tiktoken ranks file; ids keep their ranks."""
        try:
            byte_ids, merges = interop.merges_from_ranks(interop.read_tiktoken(path))
        except ValueError as err:
            raise _in_file(path, err) from None
        return cls(merges, pattern, special_tokens, byte_ids)

    def save_huggingface(self, path: str | os.PathLike) -> None:
        """A ``tokenizer.json`` that Hugging Face ``tokenizers`` loads and encodes identically."""
        named = {v: k for k, v in PATTERNS.items()}.get(self.pattern)
        d = interop.huggingface_dict(self._vocab, self.merges, self.pattern, named == "gpt2",
                                     self.special_tokens)
        atomic_write_bytes(path, interop.dumps(d))

    def save_pretrained(self, folder: str | os.PathLike, model_max_length: int | None = None
                        ) -> None:
        """A folder that ``transformers.AutoTokenizer.from_pretrained`` loads: ``tokenizer.json``
        and a ``tokenizer_config.json`` naming the end-of-text token as bos and eos (if any)."""
        to_folder(self, folder, interop.huggingface_config(self.end_of_text, model_max_length))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> BPETokenizer:
        """The tokenizer of a Hugging Face model folder: ``tokenizer.json`` (byte-level BPE),
        with the chat template of ``tokenizer_config.json`` (or ``chat_template.jinja``) when
        it is the plain message-loop form; another template is left out with a warning."""
        return with_chat_template(cls.from_huggingface(Path(folder) / "tokenizer.json"), folder)

    @classmethod
    def from_huggingface(cls, path: str | os.PathLike, contents: object = None) -> BPETokenizer:
        """Import a byte-level BPE ``tokenizer.json`` (``contents``: the file already parsed, if
        the caller read it); ids are kept."""
        try:
            contents = read_json(path) if contents is None else contents
            pattern, specials, byte_ids, merges = interop.read_huggingface(contents)
            return cls(merges, pattern, specials, byte_ids)
        except ValueError as err:
            raise _in_file(path, err) from None


def with_chat_template(tokenizer: Tokenizer, folder: str | os.PathLike) -> Tokenizer:
    """``tokenizer`` with the chat template of its Hugging Face ``folder`` when alphagrad reads
    that form (another is left out, with a warning)."""
    try:
        tokenizer.chat_template = _chat_template(Path(folder))
    except ValueError as err:
        warnings.warn(f"{folder}: {err}; chat requests use the plain template", stacklevel=2)
    return tokenizer


def to_folder(tokenizer: Tokenizer, folder: str | os.PathLike, config: dict) -> None:
    """``tokenizer.save_huggingface`` into ``folder``, beside ``config`` as its
    ``tokenizer_config.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_huggingface(folder / "tokenizer.json")
    atomic_write_bytes(folder / "tokenizer_config.json", interop.dumps(config))


def _chat_template(folder: Path) -> ChatTemplate | None:
    """The chat template a Hugging Face tokenizer folder keeps (chat_template.jinja, or
    tokenizer_config.json's chat_template), as a ChatTemplate; None if there is none."""
    config_path, jinja_path = folder / "tokenizer_config.json", folder / "chat_template.jinja"
    config = read_json(config_path) if config_path.is_file() else {}
    source = jinja_path.read_text(encoding="utf-8") if jinja_path.is_file() \
        else config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(source, list):  # named templates: the default one
        source = next((t.get("template") for t in source
                       if isinstance(t, dict) and t.get("name") == "default"), None)
    if not isinstance(source, str):
        return None
    eos = config.get("eos_token") if isinstance(config, dict) else None
    eos = eos.get("content") if isinstance(eos, dict) else eos
    return chat_template_from_jinja(source, eos if isinstance(eos, str) and eos else None)


def _in_file(path: str | os.PathLike, err: ValueError) -> ValueError:
    message = str(err)
    where = f"tokenizer file {os.fspath(path)!r}"
    return ValueError(message if message.startswith(where) else f"{where}: {message}")


MAX_ID = 2**31 - 1  # the encoder keys a pair of ids as left << 32 | right in an int64


def _token_id(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not 0 <= value <= MAX_ID:
        raise ValueError(f"{where} is {value!r:.40}; token ids are ints in [0, {MAX_ID}]")
    return int(value)


def _merge(merge: object, rank: int) -> tuple[int, int, int]:
    if not isinstance(merge, (list, tuple)) or len(merge) != 3:
        raise ValueError(f"merge {rank} is {merge!r:.60}; a merge is [left id, right id, new id]")
    return tuple(_token_id(t, f"merge {rank}: an id") for t in merge)


def _special_tokens(special_tokens: object) -> dict[str, int]:
    if not isinstance(special_tokens, dict) or not all(isinstance(s, str) for s in special_tokens):
        raise ValueError(f"special tokens must map text to ids, got {special_tokens!r:.60}")
    return {s: _token_id(t, f"special token {s!r:.40}: its id") for s, t in special_tokens.items()}


def _derive_vocab(byte_ids: list[int], merges: list[tuple[int, int, int]],
                  special_tokens: dict[str, int]) -> dict[int, bytes]:
    # Checks that the merges build a one-to-one id <-> bytes vocabulary.
    if len(byte_ids) != 256 or len(set(byte_ids)) != 256 or min(byte_ids, default=0) < 0:
        raise ValueError("byte_ids must be 256 distinct non-negative ids")
    vocab = {t: bytes([b]) for b, t in enumerate(byte_ids)}
    ids_of = {v: t for t, v in vocab.items()}
    for rank, (a, b, t) in enumerate(merges):
        if a not in vocab or b not in vocab:
            raise ValueError(f"merge {rank} ({a}, {b}) uses an id that no earlier merge made")
        merged = vocab[a] + vocab[b]
        if ids_of.get(merged, t) != t or (t in vocab and vocab[t] != merged):
            raise ValueError(f"merge {rank} gives id {t} to bytes {merged!r}, which clash with "
                             "an existing token")
        if t < 0:
            raise ValueError(f"merge {rank} has a negative id {t}")
        vocab[t] = merged
        ids_of[merged] = t
    for s, t in special_tokens.items():
        if t in vocab or t < 0:
            raise ValueError(f"special token {s!r} has id {t}, which is taken or negative")
        vocab[t] = s.encode()
    return vocab

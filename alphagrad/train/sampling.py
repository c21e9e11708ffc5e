"""Sampling from a checkpoint: the model and its embedded tokenizer, text in, text out."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad.nn.families import from_pretrained, from_state_dict
from alphagrad.nn.lm import LanguageModel
from alphagrad.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
)
from alphagrad.train.export import is_safetensors, load_weights


def checkpoint_file(path: str | Path) -> Path:
    """``path`` if it is a file or a Hugging Face folder (with config.json), else the run
    folder's best checkpoint (or its latest)."""
    path = Path(path)
    if path.is_file() or (path / "config.json").is_file():
        return path
    manager = CheckpointManager(path / "checkpoints")
    found = manager.best() or manager.latest()
    if found is None:
        raise ValueError(f"{path} is not a checkpoint file, nor a run folder with checkpoints")
    return found


def load_model(path: str | Path) -> tuple[LanguageModel, Any, Checkpoint | None]:
    """The model in a checkpoint (or in a safetensors file ``alphagrad export`` wrote, or in a
    Hugging Face GPT-2 or Llama folder), its tokenizer (or None) and the checkpoint itself (None
    for a folder), in eval mode."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return load_pretrained(path)
    ckpt = load_weights(path) if is_safetensors(path) else load_checkpoint(path)
    try:
        model = from_state_dict(ckpt.model_kind, ckpt.model_config, ckpt.model_state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model.eval()
    tokenizer = None
    if ckpt.tokenizer is not None:
        from alphagrad.tokenizers import from_dict

        try:
            tokenizer = from_dict(ckpt.tokenizer)
        except ValueError as e:
            raise CheckpointError(f"{path}: the embedded tokenizer is damaged: {e}") from None
        if tokenizer.vocab_size > model.config.vocab_size:
            raise CheckpointError(
                f"{path}: the embedded tokenizer has {tokenizer.vocab_size} ids but the model only "
                f"{model.config.vocab_size}; they do not belong together")
    return model, tokenizer, ckpt


def load_pretrained(folder: str | Path) -> tuple[LanguageModel, Any, None]:
    """The GPT or Llama in a Hugging Face folder and its tokenizer (tokenizer.json, with the
    chat template of tokenizer_config.json), or None; in eval mode."""
    from alphagrad import tokenizers

    folder = Path(folder)
    model = from_pretrained(folder)
    model.eval()
    tokenizer_json = folder / "tokenizer.json"
    tokenizer = tokenizers.from_pretrained(folder) if tokenizer_json.is_file() else None
    return model, tokenizer, None


class TextDecoder:
    """Token ids in, text out as soon as it is whole: a character whose UTF-8 bytes are split
    across tokens waits for its last byte.

        >>> decoder = TextDecoder(tokenizer)
        >>> pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") \
            if hasattr(tokenizer, "token_bytes") else None

    def push(self, token_id: int) -> str:
        """The text that ``token_id`` completes (may be empty)."""
        if token_id >= self.tokenizer.vocab_size:  # a model's padding ids have no text
            return "\ufffd"
        if self._utf8 is not None:
            return self._utf8.decode(self.tokenizer.token_bytes(token_id))
        return self.tokenizer.decode([token_id])  # a vocabulary's tokens are whole strings

    def flush(self) -> str:
        """Whatever is still held back (an unfinished character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True) if self._utf8 is not None else ""


def _text_pieces(tokenizer: Any, ids: Iterator[int]) -> Iterator[str]:
    """Decode a token stream piece by piece."""
    decoder = TextDecoder(tokenizer)
    for i in ids:
        piece = decoder.push(i)
        if piece:
            yield piece
    tail = decoder.flush()
    if tail:
        yield tail


def line_starts(dataset: Any, tokenizer: Any, n: int, window: int = 256) -> tuple[str, ...]:
    """Prompts in the data's own style: the first two words of ``n`` lines spread evenly over
    a token file (a one-word line whole, with its line break).

    >>> line_starts(TokenDataset("data/val.bin"), tok, 2)
    ('ROMEO:\n', 'Thou art ')
    """
    prompts = []
    for offset in np.linspace(0, max(len(dataset) - window, 0), n + 2)[1:-1].astype(int):
        text = tokenizer.decode(dataset.tokens[offset:offset + window].tolist())
        lines = [line.split() for line in text.split("\n")[1:-1] if line.strip()]
        if lines:
            words = lines[0]
            prompts.append(" ".join(words[:2]) + (" " if len(words) > 2 else "\n"))
    return tuple(prompts)


def encode_prompt(tokenizer: Any, text: str, allowed_special: list[str] | tuple = ()
                  ) -> list[int]:
    """A prompt's ids as the model met text in training: after the bos token, when the
    tokenizer names one (Llama 2's ``<s>``, which Hugging Face's tokenizer puts first)."""
    ids = tokenizer.encode(text, allowed_special=allowed_special) if allowed_special \
        else tokenizer.encode(text)
    bos = getattr(tokenizer, "bos_token", None)
    return [tokenizer.special_tokens[bos], *ids] if bos is not None else ids


def sample(checkpoint: str | Path | tuple, prompt: str = "\n", max_new_tokens: int = 200,
           temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, stream: bool = False) -> str | Iterator[str]:
    """Continue ``prompt`` with the model in ``checkpoint`` (a path, or ``load_model``'s result).

        >>> print(sample("runs/x/checkpoints/best.ckpt", "def ", max_new_tokens=100, seed=0))
        >>> for piece in sample(path, "def ", stream=True): print(piece, end="", flush=True)
    """
    model, tokenizer, _ = checkpoint if isinstance(checkpoint, tuple) else load_model(checkpoint)
    if tokenizer is None:
        raise CheckpointError("this checkpoint has no tokenizer embedded, so text cannot be encoded")
    ids = encode_prompt(tokenizer, prompt) or [0]
    idx = np.asarray([ids[-model.config.block_size:]], dtype=np.int64)  # (1, T)
    # a padded model vocabulary (65 characters in 128 ids) has ids without text: never draw one
    tokens = model.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                          seed=seed, vocab_limit=tokenizer.vocab_size)
    pieces = _text_pieces(tokenizer, tokens)
    return pieces if stream else "".join(pieces)

"""Sampling from a checkpoint: the model and its embedded tokenizer, text in, text out."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad.nn.gpt import GPT, GPTConfig
from alphagrad.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from alphagrad.train.export import is_safetensors, load_weights


def load_model(path: str | Path) -> tuple[GPT, Any, Checkpoint]:
    """The GPT in a checkpoint (or in a safetensors file ``alphagrad export`` wrote), its
    tokenizer (or None) and the checkpoint itself, in eval mode."""
    ckpt = load_weights(path) if is_safetensors(path) else load_checkpoint(path)
    if ckpt.model_kind != "gpt":
        raise CheckpointError(f"{path}: holds a {ckpt.model_kind!r} model, not a GPT")
    try:
        model = GPT.from_state_dict(GPTConfig.from_dict(ckpt.model_config), ckpt.model_state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model.eval()
    tokenizer = None
    if ckpt.tokenizer is not None:
        from alphagrad.tokenizers import from_dict

        tokenizer = from_dict(ckpt.tokenizer)
    return model, tokenizer, ckpt


def _text_pieces(tokenizer: Any, ids: Iterator[int]) -> Iterator[str]:
    """Decode a token stream piece by piece; multi-byte characters split across tokens wait."""
    if hasattr(tokenizer, "token_bytes"):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            piece = decoder.decode(tokenizer.token_bytes(i))
            if piece:
                yield piece
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
        return
    seen, text = [], ""
    for i in ids:
        seen.append(i)
        new = tokenizer.decode(seen)
        yield new[len(text):]
        text = new


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
    ids = tokenizer.encode(prompt) or [0]
    idx = np.asarray([ids[-model.config.block_size:]], dtype=np.int64)  # (1, T)
    tokens = model.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                          seed=seed)
    pieces = _text_pieces(tokenizer, tokens)
    return pieces if stream else "".join(pieces)

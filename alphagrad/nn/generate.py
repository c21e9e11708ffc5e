"""Sampling from a GPT: a KV cache, temperature, top-k, top-p (nucleus), seeds, streaming.

    >>> model.generate(idx, max_new_tokens=50, temperature=0.8, top_k=40, seed=1)
    >>> for token in model.stream(prompt, max_new_tokens=50, top_p=0.9):
    ...     print(decode([token]), end="", flush=True)

With the cache, the prompt is run once and each step after runs only the newest token,
reading every earlier key and value from per-layer buffers. A sequence longer than the
context is cropped to its last ``block_size`` tokens (as nanoGPT does) and the cache rebuilt,
so the tokens are the same as without the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from alphagrad.autograd.grad_mode import no_grad
from alphagrad.autograd.tensor import Tensor
from alphagrad.nn.kv_cache import LayerKV, new_kv_cache
from alphagrad.tensor.random import generator
from alphagrad.tensor.threads import serial_below

__all__ = ["LayerKV", "generate", "new_kv_cache", "sample", "stream"]


def sample(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """One token id per row of ``logits`` (B, V), never one that top-k / top-p excluded.

        >>> sample(np.array([[0.0, 5.0, 1.0]]), temperature=0)
        array([1])
    """
    if np.isnan(logits).any() or np.isposinf(logits).any():
        raise ValueError("sample: the logits hold NaN or +inf (has the model diverged?); "
                         "nothing can be sampled from them")
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    logits = logits.astype(np.float64) / temperature  # (B, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        # keep the likeliest tokens until their mass reaches top_p (always at least one)
        drop_sorted = np.cumsum(sorted_probs, axis=-1) - sorted_probs >= top_p
        drop = np.empty_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        probs = np.where(drop, 0.0, probs)
    cdf = np.cumsum(probs, axis=-1)
    u = (rng if rng is not None else generator()).random(len(cdf)) * cdf[:, -1]
    # the first index whose cdf exceeds u: a zero-probability token can never be it
    return np.array([np.searchsorted(row, x, side="right") for row, x in zip(cdf, u)], np.int64)


def _check_sampling(max_new_tokens: int, temperature: float, top_k, top_p) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    if not temperature >= 0:  # NaN too
        raise ValueError(f"generate: temperature must be a number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"generate: top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")


@contextmanager
def _inference(model):
    """Eval mode and no graph, for one forward only: a paused stream must not leak either."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _steps(model, idx: np.ndarray, max_new_tokens: int, temperature: float, top_k, top_p,
           seed: int | None, use_cache: bool, vocab_limit: int | None) -> Iterator[np.ndarray]:
    """Yield the next token of every row (B,), ``max_new_tokens`` times, each below
    ``vocab_limit`` (when given)."""
    _check_sampling(max_new_tokens, temperature, top_k, top_p)
    vocab = model.config.vocab_size
    if vocab_limit is not None and not (isinstance(vocab_limit, int) and 1 <= vocab_limit <= vocab):
        raise ValueError(f"generate: vocab_limit must be an int in [1, {vocab}] (the model's "
                         f"vocab_size), got {vocab_limit!r}")
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"generate: idx must be (B, T) with T >= 1, got shape {idx.shape}")
    rng = np.random.default_rng(seed) if seed is not None else generator()
    block = model.config.block_size
    tokens, cache = idx, None
    for _ in range(max_new_tokens):
        with _inference(model):
            if not use_cache:
                logits, _ = model(tokens[:, -block:])
            elif cache is None or cache.length == block:  # (re)fill from the cropped context
                cache = cache or new_kv_cache(model, len(tokens))
                cache.reset()
                logits, _ = model(tokens[:, -block:], kv_cache=cache)
            else:
                with serial_below(len(tokens)):
                    logits, _ = model(tokens[:, -1:], kv_cache=cache)
        nxt = sample(logits.data[:, -1, :vocab_limit], temperature, top_k, top_p, rng)  # (B,)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        yield nxt


def _as_idx(idx: Any) -> np.ndarray:
    idx = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"generate: token ids must be integers, got {idx.dtype}")
    return idx.astype(np.int64, copy=False)


def generate(model, idx: Any, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             use_cache: bool = True, vocab_limit: int | None = None) -> Tensor:
    """``idx`` (B, T) followed by ``max_new_tokens`` sampled tokens per row: (B, T + n)."""
    idx = _as_idx(idx)
    new = list(_steps(model, idx, max_new_tokens, temperature, top_k, top_p, seed, use_cache,
                      vocab_limit))
    return Tensor(np.concatenate([idx] + [t[:, None] for t in new], axis=1))


def stream(model, idx: Any, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
           use_cache: bool = True, vocab_limit: int | None = None) -> Iterator[int]:
    """Yield the new tokens of one sequence (``idx`` (T,) or (1, T)) as ints, one at a time."""
    idx = _as_idx(idx)
    idx = idx[None, :] if idx.ndim == 1 else idx
    if idx.ndim != 2 or idx.shape[0] != 1:
        raise ValueError(f"stream: expects one sequence, (T,) or (1, T), got shape {idx.shape}")
    for nxt in _steps(model, idx, max_new_tokens, temperature, top_k, top_p, seed, use_cache,
                      vocab_limit):
        yield int(nxt[0])

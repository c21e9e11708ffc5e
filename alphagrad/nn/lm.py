"""What every language model here shares: checked token ids, the loss, AdamW's parameter groups,
and sampling with a KV cache. ``GPT`` and ``Llama`` subclass ``LanguageModel`` and add their own
layers and ``forward``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from alphagrad.autograd import functional as F
from alphagrad.autograd.tensor import Tensor
from alphagrad.nn import generate, init
from alphagrad.nn.module import Module
from alphagrad.nn.optim import AdamW

# What any model this library builds may ask for: far past every published one, and small enough
# that a damaged or crafted config is refused before it allocates anything.
LIMITS = {"block_size": 1 << 20, "vocab_size": 1 << 31, "n_layer": 1024, "n_head": 1024,
          "n_embd": 1 << 16}


class LanguageModel(Module):
    """A causal language model: ``model(idx, targets, kv_cache) -> (logits, loss)``.

    Subclasses name their ``kind`` (what checkpoints store) and ``config_class``, and set
    ``config`` (with ``vocab_size``, ``block_size``, ``n_layer``, ``n_head``, ``n_embd``) and an
    ``lm_head``.
    """

    kind: str
    config_class: type
    config: Any

    @classmethod
    def from_state_dict(cls, config: Any, state_dict: Mapping[str, Any]) -> LanguageModel:
        """A model that takes ``state_dict``'s arrays as its weights, with no random init: every
        shape is checked against ``config`` before any memory is allocated, so a config that
        claims more than the weights hold fails at once."""
        with init.empty_weights():
            model = cls(config)
        model.load_state_dict(state_dict, assign=True)
        return model

    def _check_idx(self, idx: Any) -> np.ndarray:
        """``idx`` as a (B, T) integer array of ids within the vocabulary."""
        name = type(self).__name__
        idx = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"{name}: idx must be an integer array of shape (B, T), got "
                             f"{idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise ValueError(f"{name}: token id {bad} is out of range for vocab_size "
                             f"{self.config.vocab_size}")
        return idx

    def _positions(self, T: int, kv_cache: Any) -> np.ndarray:
        """The positions (T,) of T new tokens: after the cached ones, else 0..T-1."""
        if kv_cache is not None:
            return kv_cache.positions(T)
        if T > self.config.block_size:
            raise ValueError(f"{type(self).__name__}: a sequence of length {T} does not fit "
                             f"block_size {self.config.block_size}; crop it "
                             "(idx[:, -block_size:])")
        return np.arange(T, dtype=np.int64)

    def _logits_and_loss(self, x: Tensor, targets: Any, kv_cache: Any = None,
                         all_logits: bool = False) -> tuple[Tensor, Tensor | None]:
        """The head over the final hidden states x (B, T, C) and the mean cross-entropy against
        ``targets`` (B, T), whose -1 entries are ignored (when all are, the loss is 0.0 with
        zero gradients, not NaN). Without targets: the last position's logits (B, 1, V), every
        position's with ``all_logits``, or the rows a KV cache asks for."""
        B, T, _ = x.shape
        if targets is None:
            if kv_cache is not None:
                rows = kv_cache.readout(T)
            else:
                rows = slice(None) if all_logits else slice(T - 1, T)
            return self.lm_head(x[:, rows, :]), None  # (B, 1, V), (B, T, V) or the cache's rows
        logits = self.lm_head(x)  # (B, T, V)
        targets = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
        if targets.shape != (B, T):
            raise ValueError(f"{type(self).__name__}: targets have shape {targets.shape}, "
                             f"expected {(B, T)} like idx")
        if not (targets != -1).any():  # a mean over no targets: 0, still part of the graph
            return logits, (logits * 0.0).sum()
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float], device_type: str | None = None):
        """AdamW with weight decay on matrices (dim >= 2) only, not on biases and norms.

        ``device_type`` is accepted so nanoGPT's call works unchanged; alphagrad runs on the CPU.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return AdamW(groups, lr=learning_rate, betas=betas)

    def generate(self, idx: Any, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True, vocab_limit: int | None = None) -> Tensor:
        """Continue each row of ``idx`` (B, T) by ``max_new_tokens`` sampled tokens: (B, T + n).

        ``temperature=0`` is greedy; ``top_k`` / ``top_p`` restrict sampling to the k likeliest
        tokens / the smallest set holding probability p; ``seed`` makes the draw repeatable.
        ``vocab_limit`` samples only ids below it: a tokenizer's vocabulary when the model's
        ``vocab_size`` is padded (65 characters in a vocabulary of 128), whose extra ids have
        no text.
        """
        return generate.generate(self, idx, max_new_tokens, temperature, top_k, top_p, seed,
                                 use_cache, vocab_limit)

    def stream(self, idx: Any, max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
               use_cache: bool = True, vocab_limit: int | None = None) -> Iterator[int]:
        """The tokens ``generate`` would add to one sequence, yielded one at a time as ints."""
        return generate.stream(self, idx, max_new_tokens, temperature, top_k, top_p, seed,
                               use_cache, vocab_limit)

"""Llama, read top to bottom: rotary positions, RMSNorm, a SwiGLU MLP, grouped-query attention.

    >>> config = LlamaConfig(vocab_size=256, block_size=64, n_layer=2, n_head=4, n_kv_head=2,
    ...                      n_embd=64, intermediate_size=176)
    >>> model = Llama(config)
    >>> logits, loss = model(idx, targets)         # idx, targets: (B, T) int64
    >>> model.generate(idx[:1, :8], max_new_tokens=20, top_k=10, seed=0)

State-dict keys are Hugging Face ``LlamaForCausalLM``'s (``model.embed_tokens.weight``,
``model.layers.0.self_attn.q_proj.weight``, ..., ``lm_head.weight``), so SmolLM, TinyLlama and
Llama folders load through ``Llama.from_pretrained`` (see ``llama_hf.py``) and export back.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from alphagrad.autograd import functional as F
from alphagrad.autograd.ops.nn import joined_rows
from alphagrad.autograd.tensor import Tensor
from alphagrad.nn import init
from alphagrad.nn.kv_cache import LayerKV
from alphagrad.nn.layers import Embedding, Linear, RMSNorm, project
from alphagrad.nn.lm import LIMITS, LanguageModel
from alphagrad.nn.module import Module, ModuleDict, ModuleList
from alphagrad.tensor.kernels.rope import rope_tables

LLAMA3_SCALING = ("factor", "low_freq_factor", "high_freq_factor",
                  "original_max_position_embeddings")


@dataclass
class LlamaConfig:
    """Model shape. The defaults are SmolLM-135M's (30 layers × 576, 9 heads, 3 KV heads)."""

    vocab_size: int = 49152
    block_size: int = 2048
    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3  # key/value heads; n_head / n_kv_head query heads share each
    n_embd: int = 576
    intermediate_size: int = 1536  # the SwiGLU MLP's hidden width
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # lm_head shares the token embedding
    rope_scaling: dict | None = None  # Llama 3's: {"rope_type": "llama3", "factor": 8.0, ...}

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd",
                     "intermediate_size"):
            value, limit = getattr(self, name), LIMITS.get(name, 4 * LIMITS["n_embd"])
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 1 <= value <= limit:
                raise ValueError(f"LlamaConfig: {name} must be an int in [1, {limit}], got "
                                 f"{value!r}")
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"LlamaConfig: n_embd={self.n_embd} must split into n_head="
                             f"{self.n_head} heads of an even size (rotary pairs)")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"LlamaConfig: n_head={self.n_head} is not a multiple of "
                             f"n_kv_head={self.n_kv_head}")
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"LlamaConfig: {name} must be a positive number, got {value!r}")
        if type(self.tie_embeddings) not in (bool, np.bool_):
            raise ValueError(f"LlamaConfig: tie_embeddings must be true or false, got "
                             f"{self.tie_embeddings!r}")
        if self.rope_scaling is not None:
            s = self.rope_scaling
            ok = isinstance(s, dict) and s.get("rope_type") == "llama3" and all(
                isinstance(s.get(k), (int, float)) and s[k] > 0 for k in LLAMA3_SCALING)
            if not ok or s["high_freq_factor"] <= s["low_freq_factor"]:
                raise ValueError(f"LlamaConfig: rope_scaling {s!r} is not supported; only "
                                 f"rope_type 'llama3' with positive {', '.join(LLAMA3_SCALING)} "
                                 "(high_freq_factor > low_freq_factor)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LlamaConfig:
        """A config from stored fields (a checkpoint's); unknown keys are errors, not ignored."""
        known = [f.name for f in fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            raise ValueError(f"LlamaConfig: unknown keys {unknown} (known: {', '.join(known)})")
        return cls(**values)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """The rotary frequencies θ^(-2j/hs), j < hs/2, with Llama 3's long-context scaling if set:
    wavelengths beyond the original context are slowed by ``factor``, those shorter than
    ``original / high_freq_factor`` kept, and those between blended smoothly."""
    hs = config.head_size
    inv_freq = config.rope_theta ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)  # (hs/2,)
    if config.rope_scaling is None:
        return inv_freq
    s = config.rope_scaling
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    original = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    smooth = np.clip((original / wavelen - low) / (high - low), 0.0, 1.0)  # 0: slow, 1: keep
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


_PACKING = threading.Lock()


def fused_linear(x: Tensor, *layers: Linear) -> Tensor:
    """The bias-free ``layers`` over one input as one GEMM: their outputs side by side on the last
    axis, and backward one GEMM for the input's gradient (not one per layer and a sum).

    Each layer keeps its own weight (Hugging Face's names, checkpoints, optimizer state), but
    the weights live as consecutive rows of one buffer, read whole without a copy. They are
    moved there on first use and again whenever one is replaced (``load_state_dict(assign=True)``,
    ``to()``), as PyTorch's recurrent layers flatten their weights.
    """
    weights = [layer.weight for layer in layers]
    if joined_rows([w.data for w in weights]) is None:
        with _PACKING:  # two threads packing at once could each move some of the weights
            if joined_rows([w.data for w in weights]) is None:
                packed = np.concatenate([w.data for w in weights])  # (sum of out, in_features)
                start = 0
                for w in weights:
                    w.data, start = packed[start:start + w.shape[0]], start + w.shape[0]
    return F.linear(x, F.cat_rows(weights))


class Attention(Module):
    """Causal self-attention with rotary positions; n_kv_head key/value heads shared by
    n_head / n_kv_head query heads each (grouped-query attention), read without copies."""

    def __init__(self, config: LlamaConfig):
        C, hs = config.n_embd, config.head_size
        self.n_head, self.n_kv_head, self.head_size = config.n_head, config.n_kv_head, hs
        self.q_proj = Linear(C, config.n_head * hs, bias=False)
        self.k_proj = Linear(C, config.n_kv_head * hs, bias=False)
        self.v_proj = Linear(C, config.n_kv_head * hs, bias=False)
        self.o_proj = Linear(config.n_head * hs, C, bias=False)

    def forward(self, x: Tensor, cos: np.ndarray, sin: np.ndarray,
                kv_cache: LayerKV | None = None, residual: Tensor | None = None) -> Tensor:
        """The attention's output, plus ``residual`` if given (added inside the projection)."""
        B, T, _ = x.shape
        NH, NKV, hs = self.n_head, self.n_kv_head, self.head_size
        qkv = fused_linear(x, self.q_proj, self.k_proj, self.v_proj)  # (B, T, (NH + 2·NKV)·hs)
        qkv = qkv.view(B, T, NH + 2 * NKV, hs)
        if kv_cache is None:
            y = F.rotary_self_attention(qkv, cos, sin, NH, NKV)  # (B, T, C)
            return project(self.o_proj, y, residual)
        q = F.rotary_embedding(qkv[:, :, :NH], cos, sin).transpose(1, 2)  # (B, NH, T, hs)
        k = F.rotary_embedding(qkv[:, :, NH:NH + NKV], cos, sin).transpose(1, 2)  # (B, NKV, T, hs)
        v = qkv[:, :, NH + NKV:].transpose(1, 2)
        y = kv_cache.attend(q, k, v)  # (B, NH, T, hs), over the cached keys too
        return project(self.o_proj, y.transpose(1, 2).reshape(B, T, NH * hs), residual)


class MLP(Module):
    """down(silu(gate(x)) · up(x))."""

    def __init__(self, config: LlamaConfig):
        self.gate_proj = Linear(config.n_embd, config.intermediate_size, bias=False)
        self.up_proj = Linear(config.n_embd, config.intermediate_size, bias=False)
        self.down_proj = Linear(config.intermediate_size, config.n_embd, bias=False)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """The MLP's output, plus ``residual`` if given (added inside the projection)."""
        return project(self.down_proj, F.swiglu(fused_linear(x, self.gate_proj, self.up_proj)),
                       residual)


class Block(Module):
    def __init__(self, config: LlamaConfig):
        self.input_layernorm = RMSNorm(config.n_embd, eps=config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, eps=config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cos: np.ndarray, sin: np.ndarray,
                kv_cache: LayerKV | None = None) -> Tensor:
        x = self.self_attn(self.input_layernorm(x), cos, sin, kv_cache, residual=x)
        return self.mlp(self.post_attention_layernorm(x), residual=x)


class Llama(LanguageModel):
    """Llama-family language model; ``model(idx, targets) -> (logits, loss)``."""

    kind, config_class = "llama", LlamaConfig

    def __init__(self, config: LlamaConfig):
        self.config = config
        self.model = ModuleDict(
            embed_tokens=Embedding(config.vocab_size, config.n_embd),
            layers=ModuleList(Block(config) for _ in range(config.n_layer)),
            norm=RMSNorm(config.n_embd, eps=config.norm_eps),
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.inv_freq = rope_inv_freq(config)  # (hs/2,) float64: not a weight
        self._init_weights()

    def _init_weights(self) -> None:
        """N(0, 0.02) as Hugging Face's Llama, the residual projections scaled by 1/sqrt(2·L) as
        GPT-2's; norms start at one."""
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                init.normal_(p, std=0.02 / math.sqrt(2 * self.config.n_layer))
            elif name.endswith("layernorm.weight") or name == "model.norm.weight":
                init.ones_(p)
            else:
                init.normal_(p, std=0.02)

    def tied_weights(self) -> dict[str, str]:
        """State-dict aliases: ``{"lm_head.weight": "model.embed_tokens.weight"}`` when tied."""
        return {"lm_head.weight": "model.embed_tokens.weight"} if self.config.tie_embeddings \
            else {}

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; without the token embedding by default unless it is tied to the head
        (nanoGPT's convention leaves out what does not multiply activations)."""
        n = self.num_parameters()
        untied = non_embedding and not self.config.tie_embeddings
        return n - self.model.embed_tokens.weight.numel() if untied else n

    def forward(self, idx: Any, targets: Any = None, kv_cache: Any = None, *,
                all_logits: bool = False) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) and the mean cross-entropy against ``targets`` (B, T), whose -1
        entries are ignored; without targets only the last position's logits, (B, 1, V), or
        every position's with ``all_logits=True``.

        ``kv_cache`` (see ``kv_cache.py``) continues sequences whose earlier keys and values it
        holds: ``idx`` are then the next tokens only, and the cache picks the logits' rows.
        """
        idx = self._check_idx(idx)
        pos = self._positions(idx.shape[1], kv_cache)  # (T,)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        cos, sin = rope_tables(self.inv_freq, pos, x.dtype)  # (T, hs/2) each
        for i, block in enumerate(self.model.layers):
            x = block(x, cos, sin, kv_cache[i] if kv_cache is not None else None)
        return self._logits_and_loss(self.model.norm(x), targets, kv_cache, all_logits)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context length (rotary positions hold no weights: nothing else changes)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"crop_block_size: {block_size} is not in 1..{self.config.block_size}")
        self.config.block_size = block_size

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """FLOPs of one forward+backward per token: 6·N plus attention (PaLM's estimate)."""
        c = self.config
        T = seq_len if seq_len is not None else c.block_size
        return 6 * self.get_num_params() + 12 * c.n_layer * c.n_embd * T

    # ----------------------------------------------------------------- Hugging Face interop
    @classmethod
    def from_pretrained(cls, folder: str) -> Llama:
        """Load a local Hugging Face ``LlamaForCausalLM`` folder (config.json and
        model.safetensors or a sharded model.safetensors.index.json); half-precision weights
        become float32."""
        from alphagrad.nn import llama_hf  # it imports this module

        config, state_dict = llama_hf.read_folder(folder)
        return cls.from_state_dict(LlamaConfig(**config), state_dict)

    def save_pretrained(self, folder: str) -> None:
        """Write a Hugging Face ``LlamaForCausalLM`` folder (config.json, model.safetensors)."""
        from alphagrad.nn import llama_hf

        llama_hf.write_folder(folder, self.config, self.state_dict(), self.tied_weights())

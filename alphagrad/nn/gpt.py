"""A GPT you can read top to bottom: nanoGPT's architecture, parameter names and GPT-2 init.

    >>> config = GPTConfig(block_size=64, vocab_size=65, n_layer=2, n_head=4, n_embd=64)
    >>> model = GPT(config)
    >>> logits, loss = model(idx, targets)         # idx, targets: (B, T) int64
    >>> model.generate(idx[:1, :8], max_new_tokens=20, top_k=10, seed=0)

State-dict keys are nanoGPT's (``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight``,
..., ``lm_head.weight`` tied to ``transformer.wte.weight``), so its checkpoints map one to one;
Hugging Face GPT-2 weights load through ``GPT.from_pretrained`` (see ``hf.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from alphagrad.autograd import functional as F
from alphagrad.autograd.tensor import Tensor
from alphagrad.nn import hf, init
from alphagrad.nn.kv_cache import LayerKV
from alphagrad.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, project
from alphagrad.nn.lm import LIMITS, LanguageModel
from alphagrad.nn.module import Module, ModuleDict, ModuleList
from alphagrad.nn.parameter import Parameter
from alphagrad.tensor.kernels.gelu import FORMS as GELU_FORMS


@dataclass
class GPTConfig:
    """Model shape: context length, vocabulary, depth, heads, width, dropout, biases, GELU form.

    The last five fields are GPT-2 variants that Hugging Face's ``GPT2Config`` can ask for; their
    defaults are GPT-2's (and nanoGPT's) model.
    """

    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, as GPT-2; False is a bit better and faster
    gelu_approximate: str = "tanh"  # GPT-2's tanh form; "none" is the exact GELU nanoGPT trains
    n_inner: int | None = None  # the MLP's hidden width; None: 4 * n_embd
    layer_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True  # lm_head shares wte's weight; False: a head of its own
    scale_attn_weights: bool = True  # scores divided by sqrt(head size); False: not scaled
    scale_attn_by_inverse_layer_idx: bool = False  # scores of layer i also divided by i + 1

    def __post_init__(self):
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 1 <= value <= limit:
                raise ValueError(f"GPTConfig: {name} must be an int in [1, {limit}], got "
                                 f"{value!r}")
        if self.n_inner is not None and (isinstance(self.n_inner, bool)
                                         or not isinstance(self.n_inner, (int, np.integer))
                                         or not 1 <= self.n_inner <= 4 * LIMITS["n_embd"]):
            raise ValueError(f"GPTConfig: n_inner must be None or an int in "
                             f"[1, {4 * LIMITS['n_embd']}], got {self.n_inner!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"GPTConfig: layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} is not divisible by "
                             f"n_head={self.n_head}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig: dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("bias", "tie_word_embeddings", "scale_attn_weights",
                     "scale_attn_by_inverse_layer_idx"):
            if type(getattr(self, name)) not in (bool, np.bool_):
                raise ValueError(f"GPTConfig: {name} must be true or false, got "
                                 f"{getattr(self, name)!r}")
        if not isinstance(self.gelu_approximate, str) or self.gelu_approximate not in GELU_FORMS:
            raise ValueError("GPTConfig: gelu_approximate must be "
                             f"{' or '.join(map(repr, GELU_FORMS))}, got {self.gelu_approximate!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GPTConfig:
        """A config from stored fields (a checkpoint's); unknown keys are errors, not ignored."""
        known = [f.name for f in fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            raise ValueError(f"GPTConfig: unknown keys {unknown} (known: {', '.join(known)})")
        return cls(**values)


def attention_scale(config: GPTConfig, layer: int) -> float:
    """What layer ``layer``'s attention scores are multiplied by before the softmax."""
    scale = 1.0 / math.sqrt(config.n_embd // config.n_head) if config.scale_attn_weights else 1.0
    return scale / (layer + 1) if config.scale_attn_by_inverse_layer_idx else scale


class CausalSelfAttention(Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.scale = attention_scale(config, layer)

    def forward(self, x: Tensor, kv_cache: LayerKV | None = None,
                residual: Tensor | None = None) -> Tensor:
        """The attention's output, plus ``residual`` if given (added inside the projection)."""
        _B, _T, _C = x.shape
        qkv = self.c_attn(x)  # (B, T, 3C)
        if kv_cache is not None:
            y = self._cached(qkv, kv_cache)
        elif self.training and self.dropout > 0:
            y = self._with_dropout(qkv)
        else:
            y = F.fused_self_attention(qkv, self.n_head, self.scale)  # (B, T, C)
        return project(self.c_proj, y, residual, self.resid_dropout)

    def _heads(self, qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, _ = qkv.shape
        heads = qkv.view(B, T, 3, self.n_head, self.n_embd // self.n_head)
        return tuple(heads[:, :, i].transpose(1, 2) for i in range(3))  # (B, NH, T, hs) each

    def _with_dropout(self, qkv: Tensor) -> Tensor:
        B, T, _ = qkv.shape
        q, k, v = self._heads(qkv)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, is_causal=True,
                                           scale=self.scale)
        return y.transpose(1, 2).contiguous().view(B, T, self.n_embd)

    def _cached(self, qkv: Tensor, kv_cache: LayerKV) -> Tensor:
        B, T, _ = qkv.shape
        y = kv_cache.attend(*self._heads(qkv), self.scale)  # (B, NH, T, hs)
        return y.transpose(1, 2).reshape(B, T, self.n_embd)


class MLP(Module):
    def __init__(self, config: GPTConfig):
        hidden = config.n_inner or 4 * config.n_embd
        self.c_fc = Linear(config.n_embd, hidden, bias=config.bias)
        self.gelu = GELU(approximate=config.gelu_approximate)
        self.c_proj = Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """The MLP's output, plus ``residual`` if given (added inside the projection)."""
        h = F.linear_gelu(x, self.c_fc.weight, self.c_fc.bias, self.gelu.approximate)  # (B, T, 4C)
        return project(self.c_proj, h, residual, self.dropout)


class Block(Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, kv_cache: LayerKV | None = None) -> Tensor:
        x = self.attn(self.ln_1(x), kv_cache, residual=x)
        return self.mlp(self.ln_2(x), residual=x)


class GPT(LanguageModel):
    """GPT-2 style language model; ``model(idx, targets) -> (logits, loss)``."""

    kind, config_class = "gpt", GPTConfig

    def __init__(self, config: GPTConfig):
        self.config = config
        self.transformer = ModuleDict(
            wte=Embedding(config.vocab_size, config.n_embd),
            wpe=Embedding(config.block_size, config.n_embd),
            drop=Dropout(config.dropout),
            h=ModuleList(Block(config, layer) for layer in range(config.n_layer)),
            ln_f=LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # weight tying
        self._init_weights()

    def tied_weights(self) -> dict[str, str]:
        """State-dict aliases: ``{"lm_head.weight": "transformer.wte.weight"}`` when tied."""
        return {"lm_head.weight": "transformer.wte.weight"} if self.config.tie_word_embeddings \
            else {}

    def _init_weights(self) -> None:
        """GPT-2's init: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2·L)."""
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                init.normal_(p, std=0.02 / math.sqrt(2 * self.config.n_layer))
            elif name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                init.ones_(p)
            elif name.endswith(".bias"):
                init.zeros_(p)
            else:
                init.normal_(p, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; without the position embedding by default (nanoGPT's convention)."""
        n = self.num_parameters()
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: Any, targets: Any = None, kv_cache: Any = None, *,
                all_logits: bool = False) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) and the mean cross-entropy against ``targets`` (B, T), whose -1
        entries are ignored (when all are, the loss is 0.0 with zero gradients, not NaN).

        Without targets only the last position's logits, (B, 1, V), as nanoGPT (all that
        sampling needs); ``all_logits=True`` gives every position's, (B, T, V), which is what
        ``transformers``' ``model(idx).logits`` holds:

            >>> logits, _ = model(idx, all_logits=True)   # (B, T, V)

        ``kv_cache`` (see ``kv_cache.py``) continues sequences whose earlier keys and values it
        holds: ``idx`` are then the next tokens only, and the cache picks the logits' rows.
        """
        idx = self._check_idx(idx)
        pos = self._positions(idx.shape[1], kv_cache)  # (T,)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C)
        x = self.transformer.drop(tok_emb + pos_emb)
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache[i] if kv_cache is not None else None)
        return self._logits_and_loss(self.transformer.ln_f(x), targets, kv_cache, all_logits)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context length (e.g. to fine-tune GPT-2 on shorter sequences)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"crop_block_size: {block_size} is not in 1..{self.config.block_size}")
        self.config.block_size = block_size
        wpe = self.transformer.wpe
        wpe.weight = Parameter(wpe.weight.data[:block_size].copy())
        wpe.num_embeddings = block_size

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """FLOPs of one forward+backward per token: 6·N plus attention (PaLM's estimate)."""
        c = self.config
        T = seq_len if seq_len is not None else c.block_size
        return 6 * self.get_num_params() + 12 * c.n_layer * c.n_embd * T

    # ----------------------------------------------------------------- Hugging Face interop
    @classmethod
    def from_hf_state_dict(cls, state_dict: dict, config: GPTConfig | None = None) -> GPT:
        """A GPT holding Hugging Face GPT-2 weights (``transformer.`` prefix optional)."""
        config = config or GPTConfig(**hf.infer_config(state_dict))
        return cls.from_state_dict(config, hf.from_hf(state_dict, tied=config.tie_word_embeddings))

    def to_hf_state_dict(self) -> dict[str, np.ndarray]:
        """The weights under Hugging Face GPT-2 names, Conv1D weights transposed."""
        return hf.to_hf(self.state_dict())

    @classmethod
    def from_pretrained(cls, folder: str, dropout: float = 0.0) -> GPT:
        """Load a local Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors``)."""
        fields, state_dict = hf.read_folder(folder)
        return cls.from_hf_state_dict(state_dict, GPTConfig(**fields, dropout=dropout))

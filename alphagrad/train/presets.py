"""Presets ("domains"): a tokenizer, a model size, training defaults and sample prompts, by name.

A user's config file and ``--set`` overrides are applied on top, field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUILTIN_RECIPE = "recipe.json"  # in a built-in corpus's data folder, written last


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    tokenizer_kind: str  # "char", "word" or "bpe"
    vocab_size: int | None  # None: every character seen (char tokenizers)
    corpus_bytes: int  # how much of the built-in corpus to use when no data is given
    config: dict = field(default_factory=dict)  # TrainConfig fields
    prompts: tuple[str, ...] = ("def ", "class ", "import ")  # for its built-in corpus


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "char-tiny", "character-level, 2 layers × 64 wide: trains in a minute or two on 2 cores",
            "char", None, 2_000_000,
            {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64, "batch_size": 32,
             "max_iters": 3000, "learning_rate": 2e-3, "min_lr": 2e-4, "warmup_iters": 100,
             "eval_interval": 500, "eval_iters": 20, "log_interval": 50, "dropout": 0.0},
        ),
        Preset(
            "char-small", "character-level, nanoGPT's CPU recipe (4 layers × 128 wide, block 64)",
            "char", None, 8_000_000,
            {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12, "max_iters": 2000,
                 "learning_rate": 1e-3, "min_lr": 1e-4, "warmup_iters": 100, "eval_interval": 250, "eval_iters": 20,
                 "dropout": 0.0},
        ),
        Preset(
            "bpe-small", "byte-level BPE (vocab 4096), 4 layers × 128 wide, block 128",
            "bpe", 4096, 16_000_000,
            {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "batch_size": 16, "max_iters": 2000,
                 "learning_rate": 1e-3, "min_lr": 1e-4, "warmup_iters": 100, "eval_interval": 250, "eval_iters": 20,
                 "dropout": 0.0},
        ),
        Preset(
            "llama-small", "a Llama (RoPE, RMSNorm, SwiGLU, 2 KV heads), byte-level BPE 8192, "
            "6 layers × 384 wide, block 256",
            "bpe", 8192, 16_000_000,
            {"model": "llama", "n_layer": 6, "n_head": 6, "n_kv_head": 2, "n_embd": 384,
             "block_size": 256, "batch_size": 16, "max_iters": 2000, "learning_rate": 1e-3,
             "min_lr": 1e-4, "warmup_iters": 100, "eval_interval": 250, "eval_iters": 20,
             "tie_word_embeddings": True},
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a KeyError lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None

"""Helpers for the command-line tests: the tiny model's settings, a corpus, in-process runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from alphagrad.cli import main

# A model small enough that a few steps take a fraction of a second.
TINY = ["n_layer=1", "n_head=2", "n_embd=16", "block_size=16", "batch_size=4", "eval_iters=2",
        "warmup_iters=1", "learning_rate=3e-3", "min_lr=3e-4", "dropout=0.0"]


def sets(*items: str) -> list[str]:
    """``--set`` options for the tiny model plus ``items``."""
    return [arg for item in (*TINY, *items) for arg in ("--set", item)]


def corpus_text(n_lines: int = 300, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "grad", "tensor", "kernel", "loss", "def", "x"]
    return "\n".join(" ".join(rng.choice(words, size=6)) for _ in range(n_lines)) + "\n"


def run_cli(*args: str | Path, expect: int = 0, **kwargs):
    """Invoke the command line in-process; check the exit status (printing output if wrong)."""
    result = CliRunner().invoke(main, [str(a) for a in args], **kwargs)
    assert result.exit_code == expect, (result.stdout, result.stderr, result.exception)
    return result



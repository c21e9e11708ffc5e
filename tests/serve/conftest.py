"""A tiny trained checkpoint (once per session) and a live server around it on a free
loopback port, for the clients in these tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from serve_support import LiveServer

from alphagrad.tokenizers import CharTokenizer
from alphagrad.train import TrainConfig, prepare, train

WORDS = ["alpha", "beta", "gamma", "delta", "grad", "tensor", "kernel", "loss", "def", "x"]


def corpus(n_lines: int = 400, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(WORDS, size=6)) for _ in range(n_lines)) + "\n"


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, runs_root) -> Path:
    """A run folder: a 1-layer, 32-wide character model trained for 40 steps (~2 s)."""
    text = corpus()
    tokenizer = CharTokenizer.train(text + "ABCDEFGHIJKLMNOPQRSTUVWXYZ:.,!?'")
    data = tmp_path_factory.mktemp("data") / "words"
    prepare(text, tokenizer, data, val_fraction=0.2)
    tokenizer.save(data / "tokenizer.json")
    config = TrainConfig(data_dir=str(data), out_dir=str(runs_root / "tiny"), n_layer=1,
                         n_head=2, n_embd=32, block_size=64, batch_size=8, max_iters=40,
                         eval_interval=20, eval_iters=2, warmup_iters=2, learning_rate=1e-2,
                         min_lr=1e-3, log_interval=10, dropout=0.0, seed=0)
    train(config, runs_root=runs_root)
    return runs_root / "tiny"


@pytest.fixture(scope="session")
def served(trained_run):
    from alphagrad.serve import load_all

    return load_all([trained_run], slots=16)


@pytest.fixture(scope="session")
def live(served, runs_root):
    from alphagrad.serve import create_app

    server = LiveServer(create_app(served, runs_root=runs_root))
    yield server
    server.stop()

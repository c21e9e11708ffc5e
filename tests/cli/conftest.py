"""Shared material for the command-line tests: a small corpus, its data, one trained run."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import corpus_text, run_cli, sets


@pytest.fixture(autouse=True)
def own_runs_root(tmp_path, monkeypatch):
    """A runs root of each test's own, so no runs database lands in the working folder."""
    monkeypatch.setenv("ALPHAGRAD_RUNS", str(tmp_path / "runs-root"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "words.txt"
    path.write_text(corpus_text())
    return path


@pytest.fixture(scope="session")
def char_tokenizer(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "chars.json"
    run_cli("tokenizer", "train", corpus, "--kind", "char", "-o", path)
    return path


@pytest.fixture(scope="session")
def data_dir(corpus, char_tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "words"
    run_cli("prepare", corpus, "--tokenizer", char_tokenizer, "-o", folder, "--val-fraction", "0.2")
    return folder


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """(runs root, run folder, the train command's result): 6 steps, evaluations at 3 and 6."""
    root = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "--data", data_dir, "--out", root / "first", "--runs-root", root,
                     *sets("max_iters=6", "eval_interval=3", "log_interval=2"))
    return root, root / "first", result

"""evaluate_full: the exact loss over every token, against a NumPy computation from logits."""

from __future__ import annotations

import numpy as np
import pytest

import alphagrad as ag
from alphagrad.nn import GPT, GPTConfig
from alphagrad.train import evaluate_full
from alphagrad.train.data import TokenDataset, write_token_file

FP = "0" * 64


@pytest.mark.parametrize("n_tokens, batch_size", [(2, 3), (17, 2), (33, 4), (64, 8)])
def test_full_evaluation_is_the_mean_over_every_token(tmp_path, n_tokens, batch_size):
    tokens = np.random.default_rng(n_tokens).integers(0, 13, n_tokens)
    write_token_file(tmp_path / "v.bin", tokens, vocab_size=13, fingerprint=FP)
    ag.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=13, n_layer=1, n_head=2, n_embd=16))
    result = evaluate_full(model, TokenDataset(tmp_path / "v.bin"), 8, batch_size,
                           bytes_per_token=2.0)
    nll = []  # reference: each window on its own, log-softmax in float64
    for start in range(0, n_tokens - 1, 8):
        window = tokens[start:min(start + 9, n_tokens)]
        with ag.no_grad():
            logits, _ = model(window[None, :-1], all_logits=True)
        z = logits.data[0].astype(np.float64)
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        nll += list(-logp[np.arange(len(window) - 1), window[1:]])
    assert len(nll) == n_tokens - 1
    assert result["loss"] == pytest.approx(np.mean(nll), rel=1e-5)
    assert result["perplexity"] == pytest.approx(np.exp(np.mean(nll)), rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(np.mean(nll) / np.log(2) / 2.0, rel=1e-5)

"""Sampling and evaluation from checkpoints, checked against direct model calls."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import alphagrad as ag
from alphagrad.nn import GPT, GPTConfig
from alphagrad.tokenizers import BPETokenizer, CharTokenizer
from alphagrad.train.checkpoint import CheckpointError, save_checkpoint
from alphagrad.train.data import TokenDataset, iter_eval_batches, write_token_file
from alphagrad.train.evaluate import evaluate
from alphagrad.train.sampling import load_model, sample

TEXT = "héllo wörld — naïve café ☕ 日本語 " * 20


def _checkpoint(tmp_path, tokenizer, tokenizer_dict=True):
    ag.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=8))
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, model_kind="gpt", model_config=vars(model.config), model_state=model.state_dict(),
                    tokenizer=tokenizer.to_dict() if tokenizer_dict else None)
    return path, model


@pytest.mark.parametrize("make", [lambda: CharTokenizer.train(TEXT),
                                  lambda: BPETokenizer.train(TEXT, vocab_size=300, pattern="gpt2")])
def test_sample_matches_generate_and_streams_the_same_text(tmp_path, make):
    tokenizer = make()
    path, model = _checkpoint(tmp_path, tokenizer)
    prompt = "héllo"
    text = sample(path, prompt, max_new_tokens=30, temperature=1.0, seed=3)
    idx = np.asarray([tokenizer.encode(prompt)], dtype=np.int64)
    expected = model.generate(idx, 30, temperature=1.0, seed=3).data[0, idx.shape[1]:].tolist()
    assert text == tokenizer.decode(expected)
    assert "".join(sample(path, prompt, max_new_tokens=30, temperature=1.0, seed=3, stream=True)) == text


def test_load_model_keeps_the_gelu_form_and_older_checkpoints_get_gpt2s(tmp_path):
    tokenizer = CharTokenizer.train(TEXT)
    ag.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2,
                          n_embd=8, gelu_approximate="none"))
    idx = np.asarray([tokenizer.encode("héllo")], dtype=np.int64)
    older = {k: v for k, v in vars(model.config).items() if k != "gelu_approximate"}
    logits = {}
    for form, config in (("none", vars(model.config)), ("tanh", older)):
        path = tmp_path / f"{form}.ckpt"
        save_checkpoint(path, model_kind="gpt", model_config=config,
                        model_state=model.state_dict(), tokenizer=tokenizer.to_dict())
        loaded, _, _ = load_model(path)
        assert loaded.config.gelu_approximate == form
        logits[form] = loaded(idx)[0].data
    np.testing.assert_array_equal(logits["none"], model(idx)[0].data)
    assert not np.array_equal(logits["tanh"], logits["none"])


def test_load_model_rejects_checkpoints_without_what_is_needed(tmp_path):
    path, _ = _checkpoint(tmp_path, CharTokenizer.train(TEXT), tokenizer_dict=False)
    model, tokenizer, _ = load_model(path)
    assert tokenizer is None and not model.training
    with pytest.raises(CheckpointError, match="no tokenizer"):
        sample(path, "a")


def test_evaluate_is_the_mean_token_loss_and_converts_to_bits_per_byte(tmp_path):
    tokenizer = CharTokenizer.train(TEXT)
    _, model = _checkpoint(tmp_path, tokenizer)
    ids = np.asarray(tokenizer.encode(TEXT), np.int64)
    write_token_file(tmp_path / "val.bin", ids, vocab_size=tokenizer.vocab_size,
                     fingerprint=tokenizer.fingerprint())
    dataset = TokenDataset(tmp_path / "val.bin")
    result = evaluate(model, dataset, batch_size=3, block_size=16, max_batches=4, bytes_per_token=1.5)

    losses = []
    for x, y in iter_eval_batches(dataset, 3, 16, 4):
        logits = model(x, y)[0].data.astype(np.float64)  # (B, T, V)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        losses.append(-np.take_along_axis(logp, y[..., None], -1).mean())
    assert result["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["bits_per_byte"] == pytest.approx(result["loss"] / math.log(2) / 1.5)
    assert model.training  # evaluate restores the mode it found


LOAD_AND_MEASURE = """
import sys
from alphagrad.train.sampling import load_model
def status(field):  # kB
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current size
model, _, _ = load_model(sys.argv[1])
print((status("VmHWM:") - before) * 1024, model.num_parameters() * 4)
"""


def test_a_model_loads_in_about_one_copy_of_its_weights(tmp_path):
    config = GPTConfig(block_size=64, vocab_size=64, n_layer=4, n_head=4, n_embd=256)
    model = GPT(config)
    save_checkpoint(tmp_path / "m.ckpt", model_kind="gpt", model_config=vars(config),
                    model_state=model.state_dict(), tied=model.tied_weights())
    out = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, tmp_path / "m.ckpt"],
                         capture_output=True, text=True, check=True, timeout=120)
    peak, weights = map(int, out.stdout.split())
    assert weights <= peak < 2 * weights, peak / weights


def test_a_padded_vocabulary_never_samples_the_ids_without_text(tmp_path):
    tokenizer = CharTokenizer.train(TEXT)  # ~30 characters in a vocabulary padded to 128
    ag.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=128, n_layer=1, n_head=2, n_embd=8))
    path = tmp_path / "padded.ckpt"
    save_checkpoint(path, model_kind="gpt", model_config=vars(model.config),
                    model_state=model.state_dict(), tokenizer=tokenizer.to_dict())
    idx = np.asarray([tokenizer.encode("héllo")], dtype=np.int64)
    # near-uniform draws: unmasked, most of 100 tokens land on the ~98 padded ids
    free = model.generate(idx, 100, temperature=50.0, seed=1).data[0, idx.shape[1]:]
    assert (free >= tokenizer.vocab_size).sum() > 50
    kept = model.generate(idx, 100, temperature=50.0, seed=1, vocab_limit=tokenizer.vocab_size)
    kept = kept.data[0, idx.shape[1]:]
    assert kept.max() < tokenizer.vocab_size and len(set(kept.tolist())) > 10
    text = sample(path, "héllo", max_new_tokens=100, temperature=50.0, seed=1)
    assert text == tokenizer.decode(kept.tolist()) and "\ufffd" not in text
    # greedy too: the argmax over the tokenizer's ids, whatever the padded logits say
    logits = model(idx)[0].data[0, -1]
    greedy = model.generate(idx, 1, temperature=0, vocab_limit=tokenizer.vocab_size)
    assert greedy.data[0, -1] == np.argmax(logits[:tokenizer.vocab_size])
    with pytest.raises(ValueError, match=r"vocab_limit must be an int in \[1, 128\]"):
        model.generate(idx, 1, vocab_limit=129)

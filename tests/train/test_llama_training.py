"""A Llama through the training loop: exact resume, its settings, fine-tuning a Hugging Face
folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alphagrad.nn import Llama, LlamaConfig
from alphagrad.tokenizers import CharTokenizer
from alphagrad.train.checkpoint import load_checkpoint
from alphagrad.train.config import TrainConfig
from alphagrad.train.data import prepare
from alphagrad.train.presets import PRESETS
from alphagrad.train.sampling import load_model
from alphagrad.train.trainer import Trainer, model_config

TINY = {"model": "llama", "n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 16,
        "block_size": 16, "batch_size": 4, "max_iters": 8, "eval_interval": 4, "eval_iters": 2,
        "log_interval": 1, "warmup_iters": 2, "learning_rate": 3e-3, "min_lr": 3e-4}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    words = ["rope", "norm", "gate", "up", "down", "query", "key", "value"]
    text = "\n".join(" ".join(rng.choice(words, size=6)) for _ in range(300)) + "\n"
    prepare(text, CharTokenizer.train(text), folder, val_fraction=0.2)
    return folder


def _config(data_dir: Path, out: Path, **changes) -> TrainConfig:
    return TrainConfig(**(TINY | {"data_dir": str(data_dir), "out_dir": str(out)} | changes))


def _same_weights(a, b) -> None:
    for name, array in a.state_dict().items():
        np.testing.assert_array_equal(array, b.state_dict()[name], err_msg=name)


def test_llama_resume_is_bit_exact(data_dir, tmp_path):
    straight = Trainer(_config(data_dir, tmp_path / "straight"))
    straight.fit()
    half = Trainer(_config(data_dir, tmp_path / "half", max_iters=4, lr_decay_iters=8))
    half.fit()
    resumed = Trainer.resume(tmp_path / "half", max_iters=8)
    assert isinstance(resumed.model, Llama) and resumed.step == 4
    resumed.fit()
    _same_weights(straight.model, resumed.model)
    ckpt = load_checkpoint(straight.run.checkpoints.latest())
    assert ckpt.model_kind == "llama"
    assert ckpt.model_config["n_kv_head"] == 2 and ckpt.tied == {
        "lm_head.weight": "model.embed_tokens.weight"}
    model, tokenizer, _ = load_model(straight.run.checkpoints.latest())
    assert isinstance(model, Llama) and tokenizer is not None
    _same_weights(straight.model, model)


def test_fine_tune_from_a_hugging_face_folder(data_dir, tmp_path):
    vocab = CharTokenizer.load(data_dir / "tokenizer.json").vocab_size
    pretrained = Llama(LlamaConfig(vocab_size=vocab, block_size=32, n_layer=1, n_head=2,
                                   n_kv_head=1, n_embd=16, intermediate_size=32,
                                   tie_embeddings=False, rope_theta=500.0))
    pretrained.save_pretrained(tmp_path / "hf")
    trainer = Trainer(_config(data_dir, tmp_path / "ft", model="gpt", n_kv_head=None,
                              max_iters=2, init_from=str(tmp_path / "hf")))
    c = trainer.config
    assert (c.model, c.n_layer, c.n_kv_head, c.n_inner, c.rope_theta, c.block_size) == \
        ("llama", 1, 1, 32, 500.0, 16)
    _same_weights(pretrained, trainer.model)  # the folder's weights, not a fresh init
    trainer.fit()
    resumed = Trainer.resume(tmp_path / "ft", max_iters=3)  # needs no folder any more
    assert resumed.model.config.vocab_size == vocab and resumed.model.config.block_size == 16
    with pytest.raises(ValueError, match="block_size 64 is longer than the model's context 32"):
        Trainer(_config(data_dir, tmp_path / "long", block_size=64,
                        init_from=str(tmp_path / "hf")))


def test_model_config_and_preset():
    config = model_config(TrainConfig(**TINY | {"n_kv_head": None, "n_embd": 384, "n_head": 6}),
                          500)
    assert isinstance(config, LlamaConfig)
    assert (config.n_kv_head, config.intermediate_size, config.vocab_size) == (6, 1024, 500)
    preset = TrainConfig.from_dict(PRESETS["llama-small"].config)
    assert (preset.model, preset.n_layer, preset.n_embd, preset.n_head, preset.n_kv_head) == \
        ("llama", 6, 384, 6, 2)
    assert PRESETS["llama-small"].tokenizer_kind == "bpe" and PRESETS["llama-small"].vocab_size \
        == 8192


@pytest.mark.parametrize("changes, message", [
    ({"model": "mamba"}, "model must be 'gpt' or 'llama'"),
    ({"dropout": 0.1}, "dropout must be 0 for model=llama"),
    ({"n_kv_head": 3}, r"n_head \(4\) must be a multiple of n_kv_head \(3\)"),
    ({"model": "gpt"}, "n_kv_head is a llama setting"),
])
def test_llama_settings_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**TINY | changes).validate()

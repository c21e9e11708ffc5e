"""``alphagrad export --format hf`` folders used the way transformers users use a model folder:
AutoTokenizer, AutoModelForCausalLM and pipeline("text-generation"), out of the box."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cli_support import run_cli

import alphagrad as ag
from alphagrad.nn import GPT, GPTConfig
from alphagrad.tokenizers import BPETokenizer
from alphagrad.train.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

CODE = "def f(x):\n    return g(x)\n\nclass A:\n    pass\n" * 20  # "):\n" splits by pattern
SAMPLES = ["def h(y):\n    return (y)", "x = [1, 2]):\n\n  z", "a<|endoftext|>b", "  ünï cödé 123456"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(our tokenizer, our model, the exported folder): gpt4 pattern and an end-of-text token."""
    tmp = tmp_path_factory.mktemp("hf")
    tok = BPETokenizer.train(CODE, 300, pattern="gpt4", special_tokens=["<|endoftext|>"])
    ag.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2,
                          n_embd=16))
    save_checkpoint(tmp / "m.ckpt", model_kind="gpt", model_config=dataclasses.asdict(model.config),
                    model_state=model.state_dict(), tied=model.tied_weights(),
                    tokenizer=tok.to_dict())
    run_cli("export", tmp / "m.ckpt", "--format", "hf", "-o", tmp / "folder")
    return tok, model, tmp / "folder"


def test_auto_tokenizer_encodes_as_ours_with_the_real_special_tokens(exported):
    tok, model, folder = exported
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    for text in SAMPLES:
        assert theirs(text)["input_ids"] == tok.encode(text, allowed_special="all"), text
        assert theirs.decode(tok.encode(text, allowed_special="all")) == text
    eot = tok.special_tokens["<|endoftext|>"]
    assert theirs.eos_token == theirs.bos_token == "<|endoftext|>"
    assert theirs.eos_token_id == eot < model.config.vocab_size
    assert len(theirs) == tok.vocab_size == model.config.vocab_size
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.eos_token_id == config.bos_token_id == eot


def test_text_generation_pipeline_continues_as_ours(exported):
    tok, model, folder = exported
    generator = transformers.pipeline("text-generation", model=str(folder))
    prompt = "def f(x):\n"
    out = generator(prompt, max_new_tokens=10, do_sample=False)[0]["generated_text"]
    ids = tok.encode(prompt)
    ours = model.generate(np.array([ids]), max_new_tokens=10, temperature=0).data[0, len(ids):]
    eot = tok.special_tokens["<|endoftext|>"]
    ours = list(ours[:list(ours).index(eot) + 1] if eot in ours else ours)  # HF stops at eos
    assert out == prompt + transformers.AutoTokenizer.from_pretrained(folder).decode(ours)
    assert out == prompt + tok.decode(ours)


def test_a_tokenizer_without_specials_names_none(tmp_path):
    tok = BPETokenizer.train(CODE, 280, pattern="gpt4")
    tok.save_pretrained(tmp_path)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert theirs.eos_token is None and theirs.bos_token is None and len(theirs) == 280
    assert theirs(SAMPLES[1])["input_ids"] == tok.encode(SAMPLES[1])

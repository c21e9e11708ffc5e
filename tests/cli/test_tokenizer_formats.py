"""``alphagrad tokenizer export`` and ``encode --allow-special``, against tiktoken and
transformers reading what was written."""

from __future__ import annotations

import json

import pytest
from cli_support import run_cli

from alphagrad.tokenizers import BPETokenizer
from alphagrad.train import TokenDataset

TEXT = "def f(x):\n    return x<|endoftext|>class B:\n    y = 'ünï'  # 12345\n" * 30


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tok.json"
    BPETokenizer.train(TEXT, 320, pattern="gpt4", special_tokens=["<|endoftext|>"]).save(path)
    return path


def test_encode_allow_special(tok_file):
    tok = BPETokenizer.load(tok_file)
    text = "x<|endoftext|>y"
    plain = json.loads(run_cli("tokenizer", "encode", tok_file, "--text", text).stdout)
    special = json.loads(run_cli("tokenizer", "encode", tok_file, "--text", text,
                                 "--allow-special").stdout)
    eot = tok.special_tokens["<|endoftext|>"]
    assert eot not in plain and plain == tok.encode(text)
    assert special == tok.encode("x") + [eot] + tok.encode("y")


def test_export_tiktoken_encodes_as_ours_in_tiktoken(tok_file, tmp_path):
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    tok = BPETokenizer.load(tok_file)
    out = run_cli("tokenizer", "export", tok_file, "--format", "tiktoken",
                  "-o", tmp_path / "tok.tiktoken").stdout
    assert tok.pattern in out and "<|endoftext|>" in out
    enc = tiktoken.Encoding("mine", pat_str=tok.pattern,
                            mergeable_ranks=load_tiktoken_bpe(str(tmp_path / "tok.tiktoken")),
                            special_tokens=tok.special_tokens)
    assert enc.encode(TEXT, allowed_special="all") == tok.encode(TEXT, allowed_special="all")
    assert BPETokenizer.from_tiktoken(tmp_path / "tok.tiktoken", tok.pattern,
                                      tok.special_tokens) == tok


def test_export_hf_folder_loads_in_auto_tokenizer(tok_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = BPETokenizer.load(tok_file)
    run_cli("tokenizer", "export", tok_file, "--format", "hf", "-o", tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert theirs(TEXT)["input_ids"] == tok.encode(TEXT, allowed_special="all")
    assert theirs.eos_token == "<|endoftext|>"


def test_prepare_separator_on_the_command_line(tok_file, tmp_path):
    tok = BPETokenizer.load(tok_file)
    eot = tok.special_tokens["<|endoftext|>"]
    (tmp_path / "docs").mkdir()
    docs = {"a.txt": "def f(x):\n    return x\n", "b.txt": "class B:\n    y = 1\n"}
    for name, text in docs.items():
        (tmp_path / "docs" / name).write_text(text)
    tokens = {}
    for option in ([], ["--separator", "none"], ["--separator", "<|endoftext|>"]):
        out = tmp_path / f"data{len(tokens)}"
        result = run_cli("prepare", tmp_path / "docs", "--tokenizer", tok_file, "-o", out,
                         "--val-fraction", "0.5", *option)
        meta = json.loads((out / "meta.json").read_text())
        tokens[tuple(option)] = sorted(TokenDataset(out / f"{s}.bin").tokens.tolist()
                                       for s in ("train", "val"))
        assert meta["separator"] == (None if option[1:] == ["none"] else "<|endoftext|>"), result
    assert tokens[()] == tokens[("--separator", "<|endoftext|>")] == sorted(
        tok.encode(text) + [eot] for text in docs.values())
    assert tokens[("--separator", "none")] == sorted(tok.encode(text) for text in docs.values())
    result = run_cli("prepare", tmp_path / "docs", "--tokenizer", tok_file, "-o", tmp_path / "x",
                     "--separator", "<eos>", expect=2)
    assert "'<eos>' is not a special token" in result.stderr


def test_export_refuses_a_char_tokenizer(char_tokenizer, tmp_path):
    result = run_cli("tokenizer", "export", char_tokenizer, "--format", "hf", "-o", tmp_path / "x",
                     expect=2)
    assert "only byte-level BPE" in result.stderr
    result = run_cli("tokenizer", "encode", char_tokenizer, "--text", "a", "--allow-special",
                     expect=2)
    assert "no special tokens" in result.stderr

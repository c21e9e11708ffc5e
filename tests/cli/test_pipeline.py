"""The main job: config layering, the built-in corpus prepared once, a preset trained on it."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from cli_support import run_cli

from alphagrad.tokenizers import BPETokenizer, CharTokenizer, load
from alphagrad.train import PRESETS, Preset, TokenDataset
from alphagrad.train.corpus import stdlib_files
from alphagrad.train.pipeline import RECIPE, builtin_data, make_trainer, resolve_config

TINY_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4,
              "max_iters": 4, "eval_interval": 2, "eval_iters": 2, "warmup_iters": 1}
SMALL_CHAR = Preset("test-char", "a test preset", "char", None, 60_000, TINY_MODEL,
                    prompts=("def ",))


def test_config_layers_replace_only_the_fields_they_name(tmp_path):
    toml = tmp_path / "train.toml"
    toml.write_text("learning_rate = 5e-4\nmax_iters = 300\n")
    preset = PRESETS["char-tiny"].config
    config = resolve_config("char-tiny", toml, ["max_iters=50"], out_dir="runs/x")
    assert (config.n_layer, config.n_embd, config.block_size) == (preset["n_layer"],
                                                                  preset["n_embd"], 64)
    assert config.learning_rate == 5e-4      # the file over the preset
    assert config.max_iters == 50            # --set over the file
    assert config.out_dir == "runs/x" and config.preset == "char-tiny"
    assert config.warmup_iters == preset["warmup_iters"]  # untouched by the file

    toml.write_text('preset = "char-small"\nn_layer = 3\n')
    named = resolve_config(config_file=toml)
    assert (named.preset, named.n_layer, named.n_embd) == ("char-small", 3, 128)
    assert resolve_config().n_layer == 4     # no preset: TrainConfig's defaults


def test_builtin_data_is_the_standard_library_tokenized_once(tmp_path):
    preset = SMALL_CHAR
    messages = []
    folder = builtin_data(preset, tmp_path, log=messages.append)
    assert folder == tmp_path / "data" / "test-char" and "building" in messages[0]
    files = stdlib_files(preset.corpus_bytes)
    text = "".join(p.read_text(encoding="utf-8") for p in files)
    tok = load(folder / "tokenizer.json")
    decoded = "".join(tok.decode(TokenDataset(folder / f"{s}.bin").tokens.tolist())
                      for s in ("train", "val"))
    assert Counter(decoded) == Counter(text)  # every file, split between train and val
    assert json.loads((folder / "meta.json").read_text())["documents"] == len(files)

    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert builtin_data(preset, tmp_path, log=messages.append) == folder
    assert "built earlier" in messages[1]
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp

    # Data that no longer matches its tokenizer is built again.
    CharTokenizer(["<unk>", "a"]).save(folder / "tokenizer.json")
    builtin_data(preset, tmp_path, log=messages.append)
    assert "building" in messages[2]
    assert load(folder / "tokenizer.json") == tok


def test_builtin_data_for_a_bpe_preset(tmp_path):
    preset = Preset("test-bpe", "a test preset", "bpe", 300, 30_000)
    folder = builtin_data(preset, tmp_path)
    tok = load(folder / "tokenizer.json")
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 300
    expected = BPETokenizer.train(stdlib_files(30_000), 300, pattern="gpt4")
    assert tok == expected
    assert TokenDataset(folder / "val.bin").fingerprint == tok.fingerprint()
    assert json.loads((folder / RECIPE).read_text())["fingerprint"] == tok.fingerprint()


def test_make_trainer_needs_data_or_a_preset(tmp_path):
    with pytest.raises(ValueError, match="no training data"):
        make_trainer(runs_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_trainer(overrides=[f"data_dir={tmp_path / 'none'}"], runs_root=tmp_path)


def test_train_a_preset_on_the_builtin_corpus(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "test-char", SMALL_CHAR)
    root = tmp_path / "runs"
    first = run_cli("train", "--preset", "test-char", "--runs-root", root).stdout
    assert first.startswith(f"data: building {root}/data/test-char from ")
    assert "--- sample (prompt 'def ', seed 0) ---" in first
    assert first.splitlines()[-1].startswith("completed: step 4, val loss ")
    second = run_cli("train", "--preset", "test-char", "--set", "max_iters=2",
                     env={"ALPHAGRAD_RUNS": str(root)}).stdout
    assert "built earlier" in second.splitlines()[0]
    assert "completed: step 2" in second.splitlines()[-1]
    listed = run_cli("runs", "list", "--runs-root", root).stdout.splitlines()[2:]
    assert [line.split()[1:4] for line in listed] == [["completed", "test-char", "4"],
                                                      ["completed", "test-char", "2"]]

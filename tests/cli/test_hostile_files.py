"""Crafted files against the command line: one ``error:`` line, never gigabytes, a hang or a
traceback. Files that could make a command allocate or loop run it in a process of its own under
a memory limit and a timeout; the rest run in-process."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from alphagrad.cli import main
from alphagrad.nn.gpt import GPT, GPTConfig
from alphagrad.nn.safetensors import save_safetensors
from alphagrad.tokenizers import BPETokenizer, CharTokenizer
from alphagrad.train.checkpoint import load_checkpoint, save_checkpoint
from alphagrad.train.data import write_token_file
from alphagrad.train.export import FORMAT
from alphagrad.train.sampling import load_model

MEMORY_LIMIT = 1 << 30  # address space; every file here holds well under a megabyte
TIMEOUT = 60
TINY = GPTConfig(block_size=16, vocab_size=32, n_layer=1, n_head=2, n_embd=16)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def bounded(*args: str | Path, cwd: Path, stdin: bytes | None = None) -> tuple[int, str, str]:
    """(status, stdout, stderr) of ``alphagrad ARGS`` run with at most MEMORY_LIMIT bytes of
    address space and TIMEOUT seconds."""
    result = subprocess.run([sys.executable, "-m", "alphagrad.cli", *map(str, args)], cwd=cwd,
                            input=stdin, capture_output=True, timeout=TIMEOUT,
                            preexec_fn=_limit_memory, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def in_process(*args: str | Path, cwd: Path, stdin: bytes | None = None) -> tuple[int, str, str]:
    """As ``bounded``, without a new interpreter: for files that cannot make anything large."""
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def assert_user_error(status: int, stderr: str, *fragments: str) -> None:
    assert status == 2, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)


def tiny_checkpoint(path: Path, tokenizer: dict | None = None, nan: bool = False,
                    **config_changes) -> None:
    model = GPT(TINY)
    if nan:  # what a diverged run leaves
        model.transformer.h[0].mlp.c_fc.weight.data[0, 0] = np.nan
    config = {**dataclasses.asdict(TINY), **config_changes}
    save_checkpoint(path, model_kind="gpt", model_config=config, model_state=model.state_dict(),
                    tied=model.tied_weights(), tokenizer=tokenizer)


def test_a_checkpoint_claiming_a_larger_model_fails_before_allocating(tmp_path):
    # n_embd=4096, n_layer=4 is 3.2 GB of float32 for 1.3 MB of stored weights
    tiny_checkpoint(tmp_path / "claims.ckpt", n_embd=4096, n_layer=4, n_head=32)
    status, _, stderr = bounded("sample", "claims.ckpt", cwd=tmp_path)
    assert_user_error(status, stderr, "claims.ckpt", "transformer.wte.weight: checkpoint (32, 16) "
                      "vs model (32, 4096)", "more")


@pytest.mark.parametrize("changes, fragment", [
    ({"n_layer": 2**40}, "n_layer must be an int in [1, 1024]"),
    ({"n_embd": "16"}, "n_embd must be an int"),
    ({"dropout": [0.1]}, "dropout must be in [0, 1)"),
    ({"n_layers": 2}, "unknown keys ['n_layers']"),
])
def test_a_checkpoint_with_a_bad_model_config_names_the_field(tmp_path, changes, fragment):
    tiny_checkpoint(tmp_path / "bad.ckpt", **changes)
    status, _, stderr = in_process("sample", "bad.ckpt", cwd=tmp_path)
    assert_user_error(status, stderr, "bad.ckpt", fragment)


def hf_folder(folder: Path, config: object, tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_safetensors(folder / "model.safetensors", tensors, {"format": "pt"})
    return folder


def gpt2_config(**changes) -> dict:
    return {"model_type": "gpt2", "vocab_size": 32, "n_positions": 16, "n_embd": 64,
            "n_layer": 1, "n_head": 1, **changes}


def test_import_hf_checks_the_config_against_the_weights_before_allocating(tmp_path):
    hf = GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=1, n_head=1, n_embd=64))
    # 48 layers of width 6400: about 24 GB if it were built before looking at the weights
    folder = hf_folder(tmp_path / "gpt2", gpt2_config(n_embd=6400, n_layer=48, n_head=100),
                       {k.removeprefix("transformer."): v
                        for k, v in hf.to_hf_state_dict().items() if k != "lm_head.weight"})
    status, _, stderr = bounded("import-hf", folder, "-o", "out.ckpt", cwd=tmp_path)
    assert_user_error(status, stderr, "shape mismatches", "(32, 64) vs model (32, 6400)")
    assert not (tmp_path / "out.ckpt").exists()


@pytest.mark.parametrize("config, fragment", [
    ([1, 2], "holds a JSON list, not an object"),
    (gpt2_config(activation_function=["gelu"]), "activation_function"),
    (gpt2_config(n_layer="1"), "n_layer must be an int"),
    (gpt2_config(model_type=["gpt2"]), "model_type ['gpt2'] is not supported"),
])
def test_import_hf_with_a_bad_config_names_it(tmp_path, config, fragment):
    folder = hf_folder(tmp_path / "gpt2", config, {"wte.weight": np.zeros((32, 64), np.float32)})
    status, _, stderr = in_process("import-hf", folder, "-o", "out.ckpt", cwd=tmp_path)
    assert_user_error(status, stderr, str(folder), fragment)


@pytest.mark.parametrize("vocab_size, fragments", [
    (2**31, ["vocab_size=2,147,483,648 from", "GiB is available", "train.bin"]),
    (2**32 - 1, ["train.bin", "vocab_size must be an int in [1, 2147483648]"]),
])
def test_token_files_declaring_a_huge_vocabulary_are_refused(tmp_path, vocab_size, fragments):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for split in ("train", "val"):
        write_token_file(tmp_path / "data" / f"{split}.bin", rng.integers(0, 50, 500),
                         vocab_size=vocab_size, fingerprint="0" * 64)
    status, _, stderr = bounded("train", "--data", "data", "--set", "max_iters=1",
                                "--runs-root", "runs", cwd=tmp_path)
    assert_user_error(status, stderr, *fragments)


@pytest.mark.parametrize("setting, message", [
    ("block_size=100000000", "block_size must be in [1, 1,048,576], got 100,000,000"),
    ("n_layer=12345678901234567890", "n_layer must be in [1, 1,024]"),
    ("seed=18446744073709551616", "seed must be in [0, 2**64)"),
])
def test_settings_beyond_their_limits_are_refused_first(tmp_path, setting, message):
    (tmp_path / "data").mkdir()
    status, _, stderr = in_process("train", "--data", "data", "--set", setting, cwd=tmp_path)
    assert_user_error(status, stderr, message)


CHARS = CharTokenizer.train("hello world").to_dict()  # 9 ids, fewer than the model's 32


@pytest.mark.parametrize("options, checkpoint, fragments", [
    (["--temperature", "nan"], {}, ["temperature must be a number >= 0, got nan"]),
    ([], {"nan": True}, ["logits hold NaN", "diverged"]),
    ([], {"tokenizer": {**CHARS, "tokens": "hello"}}, ["ckpt", "embedded tokenizer is damaged"]),
    ([], {"tokenizer": {**BPETokenizer([], "gpt2").to_dict(), "merges": [[1, 2, 2**40]]}},
     ["ckpt", "merge 0: an id is 1099511627776"]),
    ([], {"tokenizer": BPETokenizer([], "gpt2").to_dict()},
     ["ckpt", "tokenizer has 256 ids but the model only 32"]),
])
def test_sampling_from_bad_checkpoints_says_what_is_wrong(tmp_path, options, checkpoint,
                                                          fragments):
    tiny_checkpoint(tmp_path / "m.ckpt", **{"tokenizer": CHARS, **checkpoint})
    status, _, stderr = in_process("sample", "m.ckpt", "--max-new-tokens", "3", *options,
                                cwd=tmp_path)
    assert_user_error(status, stderr, *fragments)


def test_a_tokenizer_smaller_than_the_model_samples_without_failing(tmp_path):
    tiny_checkpoint(tmp_path / "m.ckpt", tokenizer=CHARS)
    status, stdout, stderr = in_process("sample", "m.ckpt", "--prompt", "he", "--max-new-tokens",
                                     "40", "--seed", "1", cwd=tmp_path)
    assert status == 0, stderr
    assert stdout.startswith("he") and len(stdout) > len("he\n")


def test_temperature_zero_decodes_greedily(tmp_path):
    tiny_checkpoint(tmp_path / "m.ckpt", tokenizer=CHARS)
    status, stdout, stderr = in_process("sample", "m.ckpt", "--prompt", "he", "--max-new-tokens",
                                        "12", "--temperature", "0", cwd=tmp_path)
    assert status == 0, stderr
    model, tokenizer, _ = load_model(tmp_path / "m.ckpt")
    ids = tokenizer.encode("he")
    for _ in range(12):  # the argmax over the tokenizer's ids of a full forward, each step
        logits = model(np.array([ids]))[0].data[0, -1, :tokenizer.vocab_size]
        ids.append(int(np.argmax(logits)))
    assert stdout == tokenizer.decode(ids) + "\n"


def test_a_backtracking_pattern_in_a_tokenizer_file_fails_in_bounded_time(tmp_path):
    BPETokenizer([], r"(a|aa)+$").save(tmp_path / "tok.json")
    status, _, stderr = bounded("tokenizer", "encode", "tok.json", "--text", "a" * 40 + "!",
                                cwd=tmp_path)
    assert_user_error(status, stderr, "backtracks catastrophically")


def test_invalid_bytes_on_standard_input_are_refused(tmp_path):
    BPETokenizer([], "gpt2").save(tmp_path / "tok.json")
    status, _, stderr = in_process("tokenizer", "encode", "tok.json", cwd=tmp_path,
                                stdin=b"caf\xc3\xa9 \xff\xfe")
    assert_user_error(status, stderr, "standard input is not UTF-8", "0xff at offset 6")
    status, stdout, _ = in_process("tokenizer", "encode", "tok.json", cwd=tmp_path,
                                stdin="café".encode())
    assert status == 0 and json.loads(stdout) == list("café".encode())


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_training_a_tokenizer_on_an_empty_corpus_is_refused(tmp_path, kind):
    (tmp_path / "empty.txt").write_text("")
    status, _, stderr = in_process("tokenizer", "train", "empty.txt", "--kind", kind,
                                "--vocab-size", "300", "-o", "tok.json", cwd=tmp_path)
    assert_user_error(status, stderr, "the corpus is empty", "empty.txt")
    assert not (tmp_path / "tok.json").exists()


def _edit_latest_checkpoint(run: Path, edit) -> None:
    path = max((run / "checkpoints").glob("step-*.ckpt"))
    ckpt = load_checkpoint(path)
    fields = {"model_kind": ckpt.model_kind, "model_config": ckpt.model_config,
              "model_state": ckpt.model_state, "tied": ckpt.tied, "optimizer": ckpt.optimizer,
              "train_state": ckpt.train_state, "tokenizer": ckpt.tokenizer,
              "metrics": ckpt.metrics}
    edit(fields)
    save_checkpoint(path, **fields)


@pytest.mark.parametrize("edit, fragments", [
    (lambda f: f["train_state"].update(step="6"), ["train_state.step is '6', not a non-negative"]),
    (lambda f: f["train_state"].pop("sampler"), ["train_state.sampler is None"]),
    (lambda f: f["train_state"]["config"].update(n_layers=2), ["unknown key 'n_layers'"]),
    (lambda f: f["train_state"]["config"].update(n_embd=4096, n_head=32, n_layer=4),
     ["shape mismatches", "vs model (", "4096)"]),
])
def test_resuming_from_a_crafted_checkpoint_names_it(tmp_path, trained, edit, fragments):
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    _edit_latest_checkpoint(run, edit)
    status, _, stderr = in_process("train", "--resume", run, cwd=tmp_path)
    assert_user_error(status, stderr, "step-", *fragments)


@pytest.mark.parametrize("meta", ["{", "[1]", '{"val_bytes": "9", "val_tokens": 3}'])
def test_a_damaged_meta_json_is_named(tmp_path, trained, data_dir, meta):
    shutil.copytree(data_dir, tmp_path / "data")
    (tmp_path / "data" / "meta.json").write_text(meta)
    status, _, stderr = in_process("eval", trained[1], "--data", "data", cwd=tmp_path)
    assert_user_error(status, stderr, "meta.json is damaged", "re-run prepare")


@pytest.mark.parametrize("metadata", [{"model_config": "[1]"}, {"model_config": "{}",
                                                                 "tied": '["x"]'},
                                      {"model_config": "[" * 100_000 + "]" * 100_000}])
def test_weights_with_damaged_alphagrad_metadata_are_named(tmp_path, metadata):
    save_safetensors(tmp_path / "w.safetensors", {"x": np.zeros(2, np.float32)},
                     {"format": FORMAT, "model_kind": "gpt", **metadata})
    status, _, stderr = in_process("sample", "w.safetensors", cwd=tmp_path)
    assert_user_error(status, stderr, "w.safetensors: damaged alphagrad metadata")

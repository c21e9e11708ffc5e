"""What a user reaches for on the command line: run names, exact evaluation, messages that say
what to do, output fit for logs."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from cli_support import run_cli

from alphagrad.nn import GPT, GPTConfig
from alphagrad.train import TokenDataset, evaluate, evaluate_full
from alphagrad.train.checkpoint import save_checkpoint
from alphagrad.train.sampling import load_model


def metrics(out: str) -> dict[str, float]:
    return {line.rsplit(None, 1)[0]: float(line.rsplit(None, 1)[1])
            for line in out.splitlines()[3:]}


def test_run_names_resolve_under_the_runs_root(trained, tmp_path, monkeypatch):
    root, run, _ = trained
    monkeypatch.chdir(tmp_path)  # "first" exists only as a run under the root
    by_name = run_cli("sample", "first", "--runs-root", root, "--prompt", "al", "--seed", "1",
                      "--max-new-tokens", "5").stdout
    assert by_name == run_cli("sample", run, "--prompt", "al", "--seed", "1",
                              "--max-new-tokens", "5").stdout
    monkeypatch.setenv("ALPHAGRAD_RUNS", str(root))
    run_cli("export", "first", "-o", tmp_path / "w.safetensors")
    missing = run_cli("eval", "nosuchrun", "--data", tmp_path, expect=2)
    assert "nosuchrun is not a file or folder, nor a run in" in missing.stderr


def test_train_resume_takes_a_run_name(trained, tmp_path, monkeypatch):
    _, run, _ = trained
    shutil.copytree(run, tmp_path / "root" / "mine")  # the shared run stays as it is
    monkeypatch.chdir(tmp_path)
    resumed = run_cli("train", "--resume", "mine", "--runs-root", tmp_path / "root",
                      "--set", "max_iters=7").stdout
    assert "resuming at step 6" in resumed.splitlines()[0]
    assert resumed.splitlines()[-1].startswith("completed: step 7")
    assert (tmp_path / "root" / "mine" / "checkpoints" / "step-00000007.ckpt").exists()
    assert not (run / "checkpoints" / "step-00000007.ckpt").exists()


def test_eval_default_is_the_same_whatever_the_checkpoint_records(trained, data_dir, tmp_path):
    _, run, _ = trained
    best = run / "checkpoints" / "best.ckpt"
    model, tok, _ = load_model(best)
    bare = tmp_path / "bare.ckpt"  # the same weights without a run's settings
    save_checkpoint(bare, model_kind="gpt", model_config=dataclasses.asdict(model.config),
                    model_state=model.state_dict(), tied=model.tied_weights(),
                    tokenizer=tok.to_dict())
    a = metrics(run_cli("eval", best, "--data", data_dir).stdout)
    b = metrics(run_cli("eval", bare, "--data", data_dir).stdout)
    val = TokenDataset(data_dir / "val.bin")
    assert a == b and a["loss"] == pytest.approx(evaluate(model, val, 8, 16, 20)["loss"], abs=1e-4)
    full = run_cli("eval", bare, "--data", data_dir, "--full")
    assert f"all {len(val) - 1:,} predicted tokens" in full.stdout
    assert metrics(full.stdout)["loss"] == pytest.approx(
        evaluate_full(model, val, 16)["loss"], abs=1e-4)


def test_eval_on_text_says_to_run_prepare(trained, corpus):
    _, run, _ = trained
    result = run_cli("eval", run, "--data", corpus, expect=2)
    assert "not an alphagrad token file" in result.stderr
    assert f"alphagrad prepare {corpus} --tokenizer" in result.stderr


def test_sample_without_a_tokenizer_says_so_before_any_output(tmp_path):
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=8))
    save_checkpoint(tmp_path / "w.ckpt", model_kind="gpt",
                    model_config=dataclasses.asdict(model.config),
                    model_state=model.state_dict(), tied=model.tied_weights())
    result = run_cli("sample", tmp_path / "w.ckpt", "--prompt", "hello", expect=2)
    assert result.stdout == "" and "has no tokenizer embedded" in result.stderr


def test_tokenizer_stats_does_not_call_training_text_held_out(char_tokenizer, corpus):
    out = run_cli("tokenizer", "stats", char_tokenizer, corpus).stdout
    assert "held out" not in out
    assert "the last 10% of the corpus given (unseen text only if the tokenizer was not " \
           "trained on it)" in out
    assert run_cli("tokenizer", "stats", char_tokenizer, corpus, "--held-out", "1").stdout \
        == run_cli("tokenizer", "stats", char_tokenizer, corpus, "--fraction", "1").stdout


def test_prepare_with_few_documents_splits_by_bytes_and_warns(char_tokenizer, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "big.txt").write_text("alpha beta gamma\n" * 3000)
    (tmp_path / "c" / "small.txt").write_text("delta\n" * 3)
    result = run_cli("prepare", tmp_path / "c", "--tokenizer", char_tokenizer, "-o",
                     tmp_path / "d", "--val-fraction", "0.05")
    assert "whole documents could not give --val-fraction 0.05" in result.stderr
    val = len(TokenDataset(tmp_path / "d" / "val.bin"))
    assert 0.03 < val / (val + len(TokenDataset(tmp_path / "d" / "train.bin"))) < 0.07


def test_serve_takes_a_run_name(trained, monkeypatch):
    pytest.importorskip("fastapi")
    from alphagrad.serve import server

    root, _, _ = trained
    served = []
    monkeypatch.setattr(server, "run", lambda app, host, port: served.append(app))
    result = run_cli("serve", "first", "--runs-root", root)
    assert len(served) == 1 and "serving first" in result.stderr
    assert "nosuch is not a file or folder, nor a run in" in run_cli(
        "serve", "nosuch", "--runs-root", root, expect=2).stderr

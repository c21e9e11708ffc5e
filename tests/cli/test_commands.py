"""Each command, in-process through click's CliRunner, against the library calls it stands for."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_support import corpus_text, run_cli, sets

from alphagrad.cli import bench as bench_module
from alphagrad.nn import GPT, GPTConfig
from alphagrad.nn.safetensors import load_safetensors
from alphagrad.tokenizers import BPETokenizer, CharTokenizer, load
from alphagrad.train import TokenDataset, evaluate, load_checkpoint, prepare
from alphagrad.train import export as export_module
from alphagrad.train.sampling import load_model, sample

# ---- tokenizer, prepare -----------------------------------------------------------------

def test_tokenizer_train_char_is_the_library_tokenizer(corpus, char_tokenizer):
    assert load(char_tokenizer) == CharTokenizer.train(corpus.read_text())


def test_tokenizer_encode_prints_ids_and_pieces(char_tokenizer):
    tok = load(char_tokenizer)
    ids = json.loads(run_cli("tokenizer", "encode", char_tokenizer, "--text", "beta x").stdout)
    assert ids == tok.encode("beta x") and tok.decode(ids) == "beta x"
    lines = run_cli("tokenizer", "encode", char_tokenizer, "--pieces", input="ab\n").stdout
    assert lines.splitlines() == [f"{tok.encode('a')[0]}\t\"a\"", f"{tok.encode('b')[0]}\t\"b\"",
                                  f"{tok.encode(chr(10))[0]}\t\"\\n\""]


def test_tokenizer_stats_counts_unknown_characters(char_tokenizer, tmp_path):
    text = "alpha QQ\n"  # Q never occurs in the corpus: 2 of 9 characters are <unk>
    (tmp_path / "held.txt").write_text(text)
    out = run_cli("tokenizer", "stats", char_tokenizer, tmp_path / "held.txt", "--held-out", "1")
    values = {line.split()[0]: float(line.split()[1]) for line in out.stdout.splitlines()[3:]}
    assert values["tokens"] == 9 and values["bytes_per_token"] == 1.0
    assert values["oov_rate"] == pytest.approx(2 / 9, abs=1e-4)
    assert values["coverage"] == pytest.approx(6 / 7, abs=1e-4)  # a l p h space newline, not Q


def test_tokenizer_train_bpe_from_a_folder(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text(corpus_text(100, seed=1))
    (folder / "b.txt").write_text(corpus_text(100, seed=2))
    (folder / ".hidden").write_text("never read")
    out = run_cli("tokenizer", "train", folder, "--vocab-size", "280", "--pattern", "gpt2",
                  "--special", "<|endoftext|>", "-o", tmp_path / "tok" / "bpe.json")
    tok = load(tmp_path / "tok" / "bpe.json")
    expected = BPETokenizer.train([folder / "a.txt", folder / "b.txt"], 280, pattern="gpt2",
                                  special_tokens=["<|endoftext|>"])
    assert tok == expected and tok.vocab_size == 280
    assert "bpe tokenizer: 280 ids from 2 file(s)" in out.stdout


def test_prepare_writes_what_the_library_writes(corpus, char_tokenizer, data_dir, tmp_path):
    prepare([corpus], load(char_tokenizer), tmp_path / "lib", val_fraction=0.2)
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (data_dir / name).read_bytes() == (tmp_path / "lib" / name).read_bytes()
    again = run_cli("prepare", corpus, "--tokenizer", char_tokenizer, "-o", tmp_path / "cli",
                    "--val-fraction", "0.2")
    assert again.stderr == ""  # no progress-bar labels left behind when stderr is not a terminal


# ---- train, sample, eval ----------------------------------------------------------------

def test_train_reports_progress_evaluations_and_a_summary(trained):
    _, run, result = trained
    lines = result.stdout.splitlines()
    steps = [line.split("/")[0] for line in lines if line.startswith("step ")]
    assert steps == ["step 1", "step 2", "step 4", "step 6"]  # log_interval 2, not a terminal
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if m["kind"] == "eval"]
    assert [m["step"] for m in evals] == [3, 6]
    assert f"eval step 6: train loss {evals[1]['train_loss']:.4f}, val loss " \
           f"{evals[1]['val_loss']:.4f}" in result.stdout
    assert lines[-1].startswith(f"completed: step 6, val loss {evals[1]['val_loss']:.4f}")
    assert lines[-1].endswith(f"run {run}")
    assert load_checkpoint(run / "checkpoints" / "step-00000006.ckpt").train_state["step"] == 6


def test_sample_streams_what_the_library_samples(trained):
    _, run, _ = trained
    best = run / "checkpoints" / "best.ckpt"
    expected = "gamma" + sample(best, "gamma", 30, temperature=0.8, top_k=5, seed=7) + "\n"
    for target in (best, run):  # a run folder means its best checkpoint
        out = run_cli("sample", target, "--prompt", "gamma", "--max-new-tokens", "30",
                      "--top-k", "5", "--seed", "7")
        assert out.stdout == expected


def test_eval_reports_loss_perplexity_and_bits_per_byte(trained, data_dir):
    _, run, _ = trained
    out = run_cli("eval", run / "checkpoints" / "best.ckpt", "--data", data_dir, "--batches", "3",
                  "--batch-size", "4")
    model, _, _ = load_model(run / "checkpoints" / "best.ckpt")
    loss = evaluate(model, TokenDataset(data_dir / "val.bin"), 4, 16, 3)["loss"]
    meta = json.loads((data_dir / "meta.json").read_text())
    bits = loss / math.log(2) / (meta["val_bytes"] / meta["val_tokens"])
    values = {line.rsplit(None, 1)[0]: float(line.rsplit(None, 1)[1])
              for line in out.stdout.splitlines()[3:]}
    assert values == pytest.approx({"loss": loss, "perplexity": math.exp(loss),
                                    "bits per byte": bits}, abs=1e-4)


# ---- run records -------------------------------------------------------------------------

def test_runs_list_show_compare_and_sync(trained, data_dir):
    root, run, _ = trained
    run_cli("train", "--data", data_dir, "--out", root / "second", "--runs-root", root,
            *sets("max_iters=3", "eval_interval=3", "learning_rate=1e-3"))
    listed = run_cli("runs", "list", "--runs-root", root).stdout.splitlines()
    assert [line.split()[:4] for line in listed[2:]] == [["first", "completed", "-", "6"],
                                                         ["second", "completed", "-", "3"]]

    shown = run_cli("runs", "show", "first", "--runs-root", root).stdout
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    for record in evals:
        assert any(line.split()[:3] == [str(record["step"]), f"{record['train_loss']:.4f}",
                                        f"{record['val_loss']:.4f}"] for line in shown.splitlines())
    assert "* train loss   o val loss" in shown and "best.ckpt (best)" not in shown
    assert "step-00000006.ckpt (best)" in shown and "max_iters=6" in shown

    compared = run_cli("runs", "compare", "first", "second", "--runs-root", root).stdout
    assert any(line.split() == ["learning_rate", "0.003", "0.001"]
               for line in compared.splitlines())
    assert any(line.split() == ["step", "6", "3"] for line in compared.splitlines())

    (root / "alphagrad.db").unlink()
    (root / "alphagrad.db-wal").unlink(missing_ok=True)
    synced = run_cli("runs", "sync", "--runs-root", root).stdout
    assert synced.startswith("2 runs")
    assert run_cli("runs", "list", "--runs-root", root).stdout.splitlines() == listed


# ---- export, import ----------------------------------------------------------------------

def test_export_safetensors_holds_the_checkpoint_weights(trained, tmp_path):
    _, run, _ = trained
    run_cli("export", run, "-o", tmp_path / "model.safetensors")
    ckpt = load_checkpoint(run / "checkpoints" / "best.ckpt")
    tensors = load_safetensors(tmp_path / "model.safetensors")
    assert tensors.keys() == ckpt.model_state.keys() - {"lm_head.weight"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(array, ckpt.model_state[name])

    # a file we write is a file we read: strict load_state_dict with the tied head, and sample
    model = GPT(GPTConfig(**ckpt.model_config))
    model.load_state_dict(tensors)
    assert model.lm_head.weight is model.transformer.wte.weight
    np.testing.assert_array_equal(model.lm_head.weight.data, ckpt.model_state["lm_head.weight"])
    from_file = run_cli("sample", tmp_path / "model.safetensors", "--prompt", "al", "--seed", "3",
                        "--max-new-tokens", "12").stdout
    assert from_file == run_cli("sample", run, "--prompt", "al", "--seed", "3",
                                "--max-new-tokens", "12").stdout


def test_export_hf_then_import_hf_gives_the_same_model(trained, tmp_path):
    _, run, _ = trained
    best = run / "checkpoints" / "best.ckpt"
    out = run_cli("export", best, "--format", "hf", "-o", tmp_path / "hf").stdout
    assert "no tokenizer.json" in out  # a char tokenizer has no Hugging Face form
    ckpt = load_checkpoint(best)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["n_positions"], config["n_embd"], config["n_layer"], config["n_head"]) == \
        (16, 16, 1, 2)
    hf = load_safetensors(tmp_path / "hf" / "model.safetensors")
    assert "lm_head.weight" not in hf  # tied to wte, as in Hugging Face's own files
    np.testing.assert_array_equal(hf["h.0.attn.c_attn.weight"],  # Conv1D: (in, out)
                                  ckpt.model_state["transformer.h.0.attn.c_attn.weight"].T)

    run_cli("import-hf", tmp_path / "hf", "-o", tmp_path / "back.ckpt")
    back = load_checkpoint(tmp_path / "back.ckpt")
    assert back.model_state.keys() == ckpt.model_state.keys()
    for name, array in ckpt.model_state.items():
        np.testing.assert_array_equal(back.model_state[name], array, err_msg=name)
    idx = np.array([[1, 2, 3, 4]])
    logits_a, _ = load_model(best)[0](idx)
    logits_b, _ = GPT.from_pretrained(str(tmp_path / "hf"))(idx)
    np.testing.assert_allclose(logits_a.data, logits_b.data, rtol=1e-5, atol=1e-6)


def test_an_interrupted_export_leaves_no_file(trained, tmp_path, monkeypatch):
    _, run, _ = trained

    def write_half_then_stop(path, tensors, metadata=None):
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "save_safetensors", write_half_then_stop)
    result = run_cli("export", run, "-o", tmp_path / "out" / "model.safetensors", expect=130)
    assert list((tmp_path / "out").iterdir()) == []
    assert result.stderr.strip() == "interrupted"


# ---- bench -------------------------------------------------------------------------------

def test_bench_runs_each_script_of_the_suite_with_the_threads(tmp_path, monkeypatch):
    for script in ("bench_kernels.py", "bench_attention.py", "bench_gpt.py"):
        (tmp_path / script).write_text(
            f"import sys\nprint('table of {script}', sys.argv[1:])\n")
    monkeypatch.setattr(bench_module, "benchmarks_dir", lambda: tmp_path)
    out = run_cli("bench", "--suite", "kernels", "--threads", "1", "--", "--rounds", "2").stdout
    assert out.splitlines() == [
        "== bench_kernels.py --threads 1 --rounds 2",
        "table of bench_kernels.py ['--threads', '1', '--rounds', '2']",
        "== bench_attention.py --threads 1 --rounds 2",
        "table of bench_attention.py ['--threads', '1', '--rounds', '2']",
    ]
    (tmp_path / "bench_gpt.py").write_text("import sys\nsys.exit(3)\n")
    failed = run_cli("bench", "--suite", "gpt", expect=1)
    assert failed.stderr == "error: bench_gpt.py exited with status 3\n"


def test_bench_without_the_scripts_says_where_they_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="source checkout"):
        bench_module.benchmarks_dir(tmp_path)
    assert bench_module.benchmarks_dir().name == "benchmarks"  # this is a source checkout


def test_every_file_prepare_writes_has_the_same_permissions(data_dir):
    modes = {p.name: p.stat().st_mode & 0o777 for p in data_dir.iterdir()}
    assert "tokenizer.json" in modes and len(set(modes.values())) == 1, modes

"""A user's mistake: exit status 2 and one ``error: ...`` line on stderr, never a traceback."""

from __future__ import annotations

import shutil

import pytest
from cli_support import run_cli, sets


@pytest.fixture(scope="module")
def files(tmp_path_factory, trained, data_dir, corpus):
    """Paths each case below may name: good ones and damaged ones."""
    folder = tmp_path_factory.mktemp("bad")
    _, run, _ = trained
    best = (run / "checkpoints" / "best.ckpt").read_bytes()
    (folder / "truncated.ckpt").write_bytes(best[: len(best) // 2])
    (folder / "garbage.ckpt").write_bytes(b"not a checkpoint at all")
    (folder / "bad.toml").write_text("n_layer = = 2\n")
    (folder / "typo.toml").write_text("n_layers = 2\n")
    (folder / "other.txt").write_text("completely different characters: QZX!\n" * 20)
    run_cli("tokenizer", "train", folder / "other.txt", "--kind", "char", "-o",
            folder / "other.json")
    run_cli("prepare", folder / "other.txt", "--tokenizer", folder / "other.json", "-o",
            folder / "other-data")
    return {"folder": folder, "run": run, "data": data_dir, "corpus": corpus}


CASES = {
    "unknown preset": (["train", "--preset", "huge"],
                       "unknown preset 'huge'; known presets: char-tiny, char-small, bpe-small"),
    "bad --set value": (["train", "--data", "{data}", "--set", "n_layer=two"],
                        "'n_layer' must be an int, got 'two' (in the overrides)"),
    "unknown --set key": (["train", "--data", "{data}", "--set", "layers=2"],
                          "unknown key 'layers' in the overrides"),
    "--set without =": (["train", "--data", "{data}", "--set", "n_layer"],
                        "override 'n_layer' must look like key=value"),
    "invalid combination": (["train", "--data", "{data}", "--set", "n_embd=30",
                             "--set", "n_head=4"], "n_embd (30) must be divisible by n_head (4)"),
    "config not TOML": (["train", "--config", "{folder}/bad.toml", "--data", "{data}"],
                        "bad.toml is not valid TOML"),
    "config with a typo": (["train", "--config", "{folder}/typo.toml", "--data", "{data}"],
                           "unknown key 'n_layers' in"),
    "missing config": (["train", "--config", "{folder}/none.toml"],
                       "'{folder}/none.toml' does not exist"),
    "no data at all": (["train", "--runs-root", "{folder}/runs"], "no training data"),
    "data of another tokenizer": (["eval", "{run}", "--data", "{folder}/other-data"],
                                  "was prepared with tokenizer"),
    "damaged checkpoint": (["sample", "{folder}/truncated.ckpt"], "truncated.ckpt"),
    "not a checkpoint": (["eval", "{folder}/garbage.ckpt", "--data", "{data}"],
                         "garbage.ckpt is not an alphagrad checkpoint"),
    "resume with settings": (["train", "--resume", "{run}", "--data", "{data}"],
                             "--resume continues a run with its own settings; drop --data"),
    "resume changing the model": (["train", "--resume", "{run}", "--set", "n_layer=3"],
                                  ("a resumed run cannot change n_layer (it shapes the model, "
                                   "the data or the optimizer state); it can change: ")),
    "run already there": (["train", "--data", "{data}", "--out", "{run}"], "already holds a run"),
    "bpe without a size": (["tokenizer", "train", "{corpus}", "-o", "{folder}/t.json"],
                           "--vocab-size is required for --kind bpe"),
    "pattern for char": (["tokenizer", "train", "{corpus}", "--kind", "char", "--pattern", "gpt2",
                          "-o", "{folder}/t.json"], "--pattern and --special apply to --kind bpe"),
    "unknown run": (["runs", "show", "nope", "--runs-root", "{run}/.."], "no run 'nope'"),
    "no runs database": (["runs", "list", "--runs-root", "{folder}"], "no runs database in"),
    "unknown command": (["trian"], "No such command 'trian'"),
    "unknown option": (["sample", "{run}", "--temp", "1"], "No such option '--temp'"),
    "option out of range": (["sample", "{run}", "--top-p", "1.5"], "'--top-p'"),
    "export over a folder": (["export", "{run}", "--format", "hf", "-o", "{folder}"],
                             "exists and is not an empty folder"),
}


@pytest.mark.parametrize("case", CASES)
def test_mistake_gives_status_2_and_one_line(case, files):
    args, expected = CASES[case]
    result = run_cli(*(a.format(**files) for a in args), expect=2)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected.format(**files) in lines[0]
    assert "Traceback" not in result.stderr


def test_a_failing_run_is_not_a_user_mistake(data_dir, tmp_path):
    # A learning rate this large drives the loss to infinity at once: the run stops, with 1.
    result = run_cli("train", "--data", data_dir, "--out", tmp_path / "run", *sets(
        "max_iters=50", "eval_interval=50", "learning_rate=1e30", "min_lr=0", "grad_clip=0"),
        expect=1)
    assert result.stderr.startswith("error: step ") and "start again with a lower learning rate " \
        "(--set learning_rate=5e+29)" in result.stderr


def test_a_validation_split_too_short_for_the_block_is_refused_at_the_start(tmp_path,
                                                                            char_tokenizer):
    corpus = tmp_path / "small.txt"
    corpus.write_text("alpha beta gamma delta\n" * 15)  # 345 characters, 23 of them held out
    prepared = run_cli("prepare", corpus, "--tokenizer", char_tokenizer, "-o", tmp_path / "data",
                       "--val-fraction", "0.05")
    assert "warning: the validation split has only 23 tokens" in prepared.stderr
    result = run_cli("train", "--data", tmp_path / "data", "--runs-root", tmp_path / "runs",
                     *sets("block_size=32", "max_iters=250"), expect=2)
    assert result.stderr.splitlines() == [
        (f"error: {tmp_path / 'data' / 'val.bin'} has 23 tokens; block_size 32 needs at least 33 "
         "(prepare with a larger --val-fraction, or set a smaller block_size)")]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_damaged_runs_database_is_named_and_sync_rebuilds_it(trained, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(trained[0], root)
    listed = run_cli("runs", "list", "--runs-root", root).stdout
    for name in ("alphagrad.db-wal", "alphagrad.db-shm"):
        (root / name).unlink(missing_ok=True)
    (root / "alphagrad.db").write_bytes(b"\0garbage" * 600)
    for command in (["list"], ["show", "first"]):
        result = run_cli("runs", *command, "--runs-root", root, expect=2)
        assert result.stderr.splitlines() == [(
            f"error: the runs database {root / 'alphagrad.db'} is damaged (file is not a "
            f"database); rebuild it from the run folders with: alphagrad runs sync --runs-root "
            f"{root}")]
    synced = run_cli("runs", "sync", "--runs-root", root)
    moved = [p for p in root.iterdir() if p.name.startswith("alphagrad.db.damaged-")]
    assert len(moved) == 1 and moved[0].read_bytes() == b"\0garbage" * 600
    assert synced.stderr.startswith(f"the runs database {root / 'alphagrad.db'} was damaged; "
                                    f"moved it to {moved[0]}")
    assert run_cli("runs", "list", "--runs-root", root).stdout == listed

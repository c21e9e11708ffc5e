"""The training loop: exact resume (in-process and after SIGKILL), signals, divergence, patience."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from holders import DatabaseHolder

from alphagrad.tokenizers import CharTokenizer
from alphagrad.train.checkpoint import checkpoint_info, load_checkpoint
from alphagrad.train.config import TrainConfig
from alphagrad.train.data import prepare
from alphagrad.train.run import RunDir
from alphagrad.train.rundb import RunDB, RunDBWarning
from alphagrad.train.runlock import RunLockLost
from alphagrad.train.trainer import Trainer, TrainingDiverged


def _corpus(n_lines: int = 400) -> str:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "grad", "tensor", "kernel", "loss"]
    return "\n".join(" ".join(rng.choice(words, size=6)) for _ in range(n_lines)) + "\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    text = _corpus()
    prepare(text, CharTokenizer.train(text), folder, val_fraction=0.2)
    return folder


def _config(data_dir: Path, out_dir: Path, **changes) -> TrainConfig:
    base = {"data_dir": str(data_dir), "out_dir": str(out_dir), "n_layer": 1, "n_head": 2, "n_embd": 16,
                "block_size": 16, "batch_size": 4, "max_iters": 8, "eval_interval": 4, "eval_iters": 2,
                "log_interval": 1, "warmup_iters": 2, "dropout": 0.1, "learning_rate": 3e-3, "min_lr": 3e-4}
    return TrainConfig(**(base | changes))


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "step"]


def _assert_same_state(a: Trainer, b: Trainer) -> None:
    for name, array in a.model.state_dict().items():
        np.testing.assert_array_equal(array, b.model.state_dict()[name], err_msg=name)
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for key, value in sa[i].items():
            np.testing.assert_array_equal(value, sb[i][key], err_msg=f"{i}.{key}")


def test_resume_is_bit_exact(data_dir, tmp_path):
    straight = Trainer(_config(data_dir, tmp_path / "straight"))
    straight.fit()

    first = Trainer(_config(data_dir, tmp_path / "split", max_iters=4, lr_decay_iters=8))
    first.fit()
    resumed = Trainer.resume(tmp_path / "split", max_iters=8)
    assert resumed.step == 4
    resumed.fit()

    _assert_same_state(straight, resumed)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "split")
    assert len(_losses(tmp_path / "split")) == 8


def test_checkpoint_is_self_contained(data_dir, tmp_path):
    trainer = Trainer(_config(data_dir, tmp_path / "run", max_iters=4, dropout=0.0))
    trainer.fit()
    ckpt = load_checkpoint(trainer.run.checkpoints.latest())
    assert ckpt.model_kind == "gpt" and ckpt.model_config["vocab_size"] == trainer.train_data.vocab_size
    assert ckpt.tokenizer == trainer.tokenizer.to_dict()
    assert ckpt.train_state["step"] == 4
    assert ckpt.model_state["lm_head.weight"] is ckpt.model_state["transformer.wte.weight"]


def test_sigint_saves_and_stops(data_dir, tmp_path):
    def interrupt(record):
        if record["kind"] == "step" and record["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(_config(data_dir, tmp_path / "run"), callbacks=[interrupt])
    final = trainer.fit()
    assert final["status"] == "interrupted" and trainer.step == 3
    assert load_checkpoint(trainer.run.checkpoints.latest()).train_state["step"] == 3
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "interrupted"


def test_divergence_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    trainer = Trainer(_config(data_dir, tmp_path / "run"))
    forward = trainer.model.forward

    def poisoned(idx, targets=None, **kw):
        logits, loss = forward(idx, targets, **kw)
        return logits, (loss * float("nan") if trainer.step >= 5 else loss)

    trainer.model.forward = poisoned
    with pytest.raises(TrainingDiverged, match="step 5"):
        trainer.fit()
    assert [p.name for p in trainer.run.checkpoints.steps()] == ["step-00000004.ckpt"]
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "diverged"


def test_patience_stops_early(data_dir, tmp_path, monkeypatch):
    trainer = Trainer(_config(data_dir, tmp_path / "run", max_iters=40, eval_interval=2, patience=2))
    losses = iter([3.0, 2.0, 2.5, 2.6, 1.0])
    monkeypatch.setattr(trainer, "evaluate", lambda: {"kind": "eval", "step": trainer.step,
                                                      "val_loss": next(losses)})
    final = trainer.fit()
    assert final["status"] == "early-stopped" and trainer.step == 8
    assert final["best_val_loss"] == 2.0
    assert trainer.run.checkpoints.best() is not None


_CHILD = """
import sys
from alphagrad.train.config import TrainConfig
from alphagrad.train.trainer import Trainer
config = TrainConfig.from_toml(sys.argv[1])
Trainer(config).fit()
"""


def test_resume_after_sigkill_is_bit_exact(data_dir, tmp_path):
    config = _config(data_dir, tmp_path / "killed", max_iters=400, eval_interval=400,
                     checkpoint_interval=3, keep_last=2)
    config_file = tmp_path / "config.toml"
    config_file.write_text(config.to_toml())
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(config_file)])
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not list(checkpoints.glob("step-*.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    latest = max(checkpoints.glob("step-*.ckpt"))  # wherever the kill landed
    start = checkpoint_info(latest)["train_state"]["step"]
    assert start % 3 == 0 and start > 0
    resumed = Trainer.resume(tmp_path / "killed", max_iters=start + 3)
    resumed.fit()

    straight = Trainer(config.replace(out_dir=str(tmp_path / "straight"), max_iters=start + 3,
                                      lr_decay_iters=400))
    straight.fit()
    _assert_same_state(straight, resumed)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "killed")


def _db_metrics(db: RunDB, run_dir: Path) -> set[tuple]:
    return {(m["step"], m["key"]) for m in db.metrics(run_dir)}


def _file_metrics(run_dir: Path) -> set[tuple]:
    """(step, key) of every number in metrics.jsonl."""
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return {(r["step"], key) for r in records for key, value in r.items()
            if key not in ("step", "kind") and type(value) in (int, float)}


def test_training_goes_on_when_the_runs_database_is_damaged(data_dir, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "alphagrad.db").write_bytes(b"garbage " * 1000)
    with pytest.warns(RunDBWarning) as caught:
        final = Trainer(_config(data_dir, root / "run"), runs_root=root).fit()
    assert final["status"] == "completed"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages  # once when it failed, once at the end: what to do
    assert "is damaged" in messages[0] and "training goes on" in messages[0]
    assert f"alphagrad runs sync --runs-root {root}" in messages[1]
    assert json.loads((root / "run" / "manifest.json").read_text())["status"] == "completed"


def test_training_goes_on_while_the_database_is_locked_and_catches_up(data_dir, tmp_path):
    root = tmp_path / "root"
    RunDB(root).close()
    holder = DatabaseHolder(root / "alphagrad.db")

    def release(record):  # the other process lets go half way through
        if record["kind"] == "step" and record["step"] == 6:
            holder.release()

    started = time.perf_counter()
    with holder, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(_config(data_dir, root / "run", max_iters=12), runs_root=root,
                          callbacks=[release])
        final = trainer.fit()
    assert time.perf_counter() - started < 30  # the index's 30 s busy wait would block this
    assert final["status"] == "completed"
    assert [w.category for w in caught] == [RunDBWarning] and "is busy" in str(caught[0].message)
    with RunDB(root) as db:  # caught up at the end, from the run folder
        assert db.get_run(root / "run")["status"] == "completed"
        assert _db_metrics(db, root / "run") == _file_metrics(root / "run")


def test_a_run_that_stops_on_an_error_records_failed_and_why(data_dir, tmp_path, monkeypatch):
    root = tmp_path / "root"
    trainer = Trainer(_config(data_dir, root / "run"), runs_root=root)

    def impossible():
        raise ValueError("evaluation impossible: no batches")

    monkeypatch.setattr(trainer, "evaluate", impossible)
    with pytest.raises(ValueError, match="evaluation impossible"):
        trainer.fit()
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["final_metrics"]["reason"] == "ValueError: evaluation impossible: no batches"
    with RunDB(root) as db:
        record = db.get_run(root / "run")
    assert record["status"] == "failed"
    assert record["final_metrics"]["reason"] == manifest["final_metrics"]["reason"]
    assert not trainer.run.lock.held  # another process may resume it now


def test_a_lost_lock_stops_the_run_as_failed(data_dir, tmp_path):
    def remove_lock(record):
        if record["kind"] == "step" and record["step"] == 2:
            os.unlink(tmp_path / "run" / "writer.lock")

    trainer = Trainer(_config(data_dir, tmp_path / "run"), callbacks=[remove_lock])
    with pytest.raises(RunLockLost, match="lost its lock"):
        trainer.fit()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "lost its lock" in manifest["final_metrics"]["reason"]
    assert trainer.step == 3  # noticed at the next write


def test_divergence_before_any_checkpoint_says_what_to_do(data_dir, tmp_path):
    trainer = Trainer(_config(data_dir, tmp_path / "run", learning_rate=1e30, min_lr=0.0,
                              grad_clip=0.0, warmup_iters=0))
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "no checkpoint was saved yet" in message and "learning_rate=5e+29" in message
    assert str(trainer.run.checkpoint_dir) not in message
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "diverged"
    assert manifest["final_metrics"]["reason"].startswith("TrainingDiverged: step ")


def _step_of(path: Path) -> int:
    return checkpoint_info(path)["train_state"]["step"]


def test_resume_may_change_the_safe_settings_and_records_the_change(data_dir, tmp_path):
    Trainer(_config(data_dir, tmp_path / "run", max_iters=4)).fit()
    resumed = Trainer.resume(tmp_path / "run", overrides=["learning_rate=1e-3", "grad_clip=0.5",
                                                          "max_iters=6", "eval_interval=3"])
    resumed.fit()
    assert resumed.config.learning_rate == 1e-3 and resumed.config.grad_clip == 0.5
    changes = {"learning_rate": [3e-3, 1e-3], "grad_clip": [1.0, 0.5], "max_iters": [4, 6],
               "eval_interval": [4, 3]}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["resumes"] == [{"step": 4, "checkpoint": "step-00000004.ckpt",
                                    "time": manifest["resumes"][0]["time"], "changes": changes}]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert {"kind": "resume", "step": 4, "changes": changes} in records
    lrs = [r["lr"] for r in records if r["kind"] == "step" and r["step"] > 4]
    assert lrs == [resumed.lr_at(4), resumed.lr_at(5)] and max(lrs) <= 1e-3
    assert TrainConfig.from_toml(tmp_path / "run" / "config.toml").learning_rate == 1e-3
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000006.ckpt") \
        .train_state["config"]["learning_rate"] == 1e-3  # a later resume keeps the change
    with pytest.raises(ValueError, match=r"a resumed run cannot change batch_size, n_layer \("
                                         r".*it can change: checkpoint_interval, "
                                         r"collective_timeout, eval_interval"):
        Trainer.resume(tmp_path / "run", overrides=["n_layer=2", "batch_size=8"])
    Trainer.resume(tmp_path / "run", max_iters=7).fit()  # the refusal left the folder unlocked


def _diverge_above(trainer: Trainer, lr: float) -> None:
    """Make the loss infinite from step 4 on while the learning rate is above ``lr``."""
    forward = trainer.model.forward

    def poisoned(idx, targets=None, **kw):
        logits, loss = forward(idx, targets, **kw)
        fast = trainer.step >= 4 and trainer.optimizer.param_groups[0]["lr"] > lr
        return logits, (loss * float("inf") if fast else loss)

    trainer.model.forward = poisoned


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_the_divergence_advice_can_be_followed(data_dir, tmp_path):
    trainer = Trainer(_config(data_dir, tmp_path / "run", max_iters=10, warmup_iters=0,
                              min_lr=2e-3, lr_decay_iters=1000))
    _diverge_above(trainer, 2e-3)
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    message = str(caught.value)
    command = message.split("resume from it with a lower learning rate: ")[1].split()
    assert command[:4] == ["alphagrad", "train", "--resume", str(tmp_path / "run")]
    assert command[4::2] == ["--set"] * 2 and "step-00000004.ckpt" in message
    resumed = Trainer.resume(command[3], overrides=command[5::2])
    assert resumed.config.learning_rate == 1.5e-3 and resumed.config.min_lr == 1e-3
    _diverge_above(resumed, 2e-3)
    assert resumed.fit()["status"] == "completed" and resumed.step == 10


def _scripted_evals(monkeypatch, trainer, losses):
    values = iter(losses)
    real = trainer.evaluate

    def scripted():
        return real() | {"val_loss": next(values)}

    monkeypatch.setattr(trainer, "evaluate", scripted)


def test_resuming_from_an_older_checkpoint_starts_a_consistent_history(data_dir, tmp_path,
                                                                       monkeypatch):
    run = tmp_path / "run"
    first = Trainer(_config(data_dir, run, max_iters=10, eval_interval=4, checkpoint_interval=2,
                            keep_last=2, lr_decay_iters=10))
    _scripted_evals(monkeypatch, first, [2.0, 2.5, 2.6])  # the best is step 4
    first.fit()
    old_steps = [p.name for p in first.run.checkpoints.steps()]
    assert old_steps == ["step-00000008.ckpt", "step-00000010.ckpt"]
    assert _step_of(run / "checkpoints" / "best.ckpt") == 4

    resumed = Trainer.resume(run / "checkpoints" / "best.ckpt", max_iters=7)
    resumed.fit()
    steps = resumed.run.checkpoints.steps()
    assert [_step_of(p) for p in steps] == [6, 7]  # the new history's, none pruned at once
    aside = [p for p in run.iterdir() if p.name.startswith("superseded-")]
    assert len(aside) == 1
    assert sorted(p.name for p in (aside[0] / "checkpoints").iterdir()) == old_steps
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 8))
    old = [json.loads(line) for line in (aside[0] / "metrics.jsonl").open()]
    assert [r["step"] for r in old if r["kind"] == "step"] == list(range(5, 11))
    assert {r["step"] for r in old} == set(range(5, 11))
    with RunDB(tmp_path / "runs-root") as db:  # the index follows the new history
        assert max(m["step"] for m in db.metrics(run)) == 7
        assert [c["step"] for c in db.checkpoints(run) if not c["is_best"]] == [6, 7]
    assert Trainer.resume(run).step == 7  # a later resume continues the new history


_KILLED_WRITING_BEST = """
import os, shutil, signal, sys
import alphagrad.train.checkpoint as checkpoint
from alphagrad.train.config import TrainConfig
from alphagrad.train.trainer import Trainer

copy, calls = shutil.copyfileobj, []

def copy_then_die(src, dst):  # the second best is cut off half way: kill -9 mid-write
    calls.append(1)
    if len(calls) == 2:
        dst.write(src.read(1000))
        dst.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    copy(src, dst)

checkpoint.shutil.copyfileobj = copy_then_die
trainer = Trainer(TrainConfig.from_toml(sys.argv[1]))
losses = iter([3.0, 2.0])
trainer.evaluate = lambda: {"kind": "eval", "step": trainer.step, "val_loss": next(losses)}
trainer.fit()
"""


def test_a_kill_while_best_is_written_is_repaired_by_sync_and_resume(data_dir, tmp_path):
    run = tmp_path / "run"
    config_file = tmp_path / "config.toml"
    config_file.write_text(_config(data_dir, run, eval_interval=2, max_iters=6).to_toml())
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITING_BEST, str(config_file)],
                           timeout=120, check=False)
    assert child.returncode == -signal.SIGKILL
    checkpoints = run / "checkpoints"
    leftovers = [p.name for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".best.ckpt.")
    assert _step_of(checkpoints / "best.ckpt") == 2  # the file the kill left
    assert checkpoint_info(checkpoints / "step-00000004.ckpt")["train_state"]["best_step"] == 4

    holder = RunDir.open(run)  # sync leaves a run that is being written alone
    holder.lock.acquire()
    with RunDB(tmp_path) as db:
        db.sync()
    assert len([p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]) == 1
    holder.lock.release()

    with RunDB(tmp_path) as db:
        db.sync()
        best = [c for c in db.checkpoints(run) if c["is_best"]]
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    assert _step_of(checkpoints / "best.ckpt") == 4 and [c["step"] for c in best] == [4]

    (checkpoints / ".step-00000004.ckpt.x1y2.tmp").write_bytes(b"half")  # the same kill again
    shutil.copyfile(checkpoints / "step-00000002.ckpt", checkpoints / "best.ckpt")
    resumed = Trainer.resume(run)
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    assert resumed.best_val_loss == 2.0 and _step_of(checkpoints / "best.ckpt") == 4

"""The live training progress: number formats, the status line, and Trainer.fit() showing it."""

from __future__ import annotations

import io
import math
import sys

import pytest

from alphagrad.train.progress import TrainingStatus, count, duration, rewrites_in_place


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"),
                                           (3599, "59m59s"), (3725, "1h02m")])
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("n, text", [(950, "950"), (12_345, "12.3k"), (4_560_000, "4.56M"),
                                     (0.5, "0.5")])
def test_count(n, text):
    assert count(n) == text


def _step(step: int, loss: float = 2.0) -> dict:
    return {"kind": "step", "step": step, "loss": loss, "lr": 1e-3, "tokens_per_sec": 12_345.0,
            "mfu": 0.031, "eta_seconds": 65.0}


def test_status_without_a_terminal_prints_one_line_per_log_interval(capsys):
    status = TrainingStatus(max_iters=6, log_interval=3, tty=False)
    for step in range(1, 7):
        status(_step(step))
    status({"kind": "eval", "step": 6, "train_loss": 1.5, "val_loss": 1.75,
            "val_perplexity": math.exp(1.75)})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("/")[0] for line in lines[:3]] == ["step 1", "step 3", "step 6"]
    assert lines[1] == ("step 3/6 | loss 2.0000 | lr 1.00e-03 | 12.3k tok/s | MFU 3.1% | "
                        "ETA 1m05s")
    assert lines[3] == "eval step 6: train loss 1.5000, val loss 1.7500, val perplexity 5.75"
    assert len(lines) == 4


def test_status_on_a_terminal_rewrites_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    status = TrainingStatus(max_iters=3, log_interval=100, tty=True)
    status(_step(1, loss=3.0))
    status(_step(2, loss=2.5))
    status({"kind": "checkpoint", "step": 2, "path": "run/ckpt", "is_best": True})
    out = capsys.readouterr().out
    first, second = status.status(_step(1, loss=3.0)), status.status(_step(2, loss=2.5))
    assert out == ("\r" + first + "\r" + second + "\r" + " " * len(second) + "\r"
                   + "  saved run/ckpt (best so far)\n")


def test_a_terminal_hears_what_the_first_step_waits_for(capsys, monkeypatch):
    """Compiling the kernels makes a process's first step long; a terminal says so until the
    first status line replaces it, a log says nothing."""
    monkeypatch.setenv("COLUMNS", "200")
    status = TrainingStatus(max_iters=3, log_interval=1, tty=True)
    status.starting(0)
    status(_step(1))
    waiting = "step 0/3 | compiling the kernels, or loading them from the cache"
    assert capsys.readouterr().out == "\r" + waiting + "\r" + status.status(_step(1)).ljust(
        len(waiting))
    TrainingStatus(max_iters=3, log_interval=1, tty=False).starting(0)
    assert capsys.readouterr().out == ""


def test_status_on_a_narrow_terminal_is_cut_to_fit(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "30")
    status = TrainingStatus(max_iters=3, log_interval=100, tty=True)
    status(_step(1))
    assert capsys.readouterr().out == "\r" + status.status(_step(1))[:29]


def test_a_notebook_rewrites_in_place_a_pipe_does_not(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not rewrites_in_place(io.StringIO())
    assert TrainingStatus(max_iters=1, log_interval=1, file=io.StringIO()).tty is False
    monkeypatch.setitem(sys.modules, "ipykernel", object())  # as inside Jupyter
    assert TrainingStatus(max_iters=1, log_interval=1, file=io.StringIO()).tty is True


def test_status_shows_no_eta_before_speed_is_known(capsys):
    TrainingStatus(max_iters=6, log_interval=3, tty=False)(_step(1) | {"eta_seconds": None})
    assert capsys.readouterr().out.rstrip().endswith("| ETA -")


def test_fit_shows_progress_without_the_command_line(tmp_path, capsys):
    from alphagrad.tokenizers import CharTokenizer
    from alphagrad.train import TrainConfig, Trainer, prepare

    text = "the quick brown fox jumps over the lazy dog\n" * 200
    prepare(text, CharTokenizer.train(text), tmp_path / "data")
    config = TrainConfig(data_dir=str(tmp_path / "data"), n_layer=1, n_head=2, n_embd=16,
                         block_size=16, batch_size=4, max_iters=4, eval_interval=4, eval_iters=1,
                         log_interval=2, warmup_iters=1)
    trainer = Trainer(config, runs_root=tmp_path / "runs")
    trainer.fit()
    lines = capsys.readouterr().out.splitlines()  # not a terminal: plain lines
    assert [line.split(" |")[0] for line in lines[:3]] == ["step 1/4", "step 2/4", "step 4/4"]
    assert lines[0].endswith("ETA -") and not lines[1].endswith("ETA -")  # step 1 compiles
    assert lines[3].startswith("eval step 4: train loss") and "saved" in lines[4]
    assert trainer.callbacks == []  # the display was fit()'s own
    quiet = Trainer(config.replace(max_iters=8), runs_root=tmp_path / "runs")
    quiet.fit(progress=False)
    assert capsys.readouterr().out == ""

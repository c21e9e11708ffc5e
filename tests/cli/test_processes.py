"""The command line as a user runs it: real processes, start to finish, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_support import corpus_text, run_cli, sets

ALPHAGRAD = [sys.executable, "-m", "alphagrad.cli"]


def alphagrad(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([*ALPHAGRAD, *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def test_from_text_to_samples_and_records(tmp_path):
    (tmp_path / "corpus").mkdir()
    for i in range(3):
        (tmp_path / "corpus" / f"part{i}.txt").write_text(corpus_text(150, seed=i))
    alphagrad("tokenizer", "train", "corpus", "--vocab-size", "300", "-o", "tok.json",
              cwd=tmp_path)
    prepared = alphagrad("prepare", "corpus", "--tokenizer", "tok.json", "-o", "data",
                         cwd=tmp_path).stdout
    assert prepared.startswith("data: ") and "3 documents" in prepared
    trained = alphagrad("train", "--data", "data", "--out", "runs/first",
                        *sets("max_iters=4", "eval_interval=2"), cwd=tmp_path).stdout
    assert "eval step 4:" in trained and "completed: step 4" in trained
    sampled = alphagrad("sample", "runs/first", "--prompt", "delta", "--max-new-tokens", "8",
                        "--seed", "0", cwd=tmp_path).stdout
    assert sampled.startswith("delta") and len(sampled) > len("delta\n")
    evaluated = alphagrad("eval", "runs/first", "--data", "data", "--batches", "2",  # the run's
                          "--batch-size", "4", cwd=tmp_path).stdout  # eval_iters and batch_size
    metrics = [json.loads(line) for line in
               (tmp_path / "runs/first/metrics.jsonl").read_text().splitlines()]
    best = min(m["val_loss"] for m in metrics if m["kind"] == "eval")
    assert evaluated.splitlines()[3].split() == ["loss", f"{best:.4f}"]  # the same val batches
    listed = alphagrad("runs", "list", cwd=tmp_path).stdout
    assert listed.splitlines()[2].split()[:4] == ["first", "completed", "-", "4"]
    shown = alphagrad("runs", "show", "first", cwd=tmp_path).stdout
    assert "* train loss   o val loss" in shown


def test_ctrl_c_saves_a_checkpoint_that_resume_continues(tmp_path, data_dir):
    run = tmp_path / "runs" / "long"
    process = subprocess.Popen(
        [*ALPHAGRAD, "train", "--data", str(data_dir), "--out", str(run),
         *sets("max_iters=100000", "eval_interval=100000", "log_interval=1")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # the loop has started once a step is reported
            if line.startswith("step 3/"):
                process.send_signal(signal.SIGINT)
                break
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    saved = sorted((run / "checkpoints").glob("step-*.ckpt"))
    assert len(saved) == 1
    step = int(saved[0].stem.split("-")[1])
    assert step >= 3
    assert err.splitlines() == [f"interrupted at step {step}; checkpoint saved in {saved[0]}",
                                f"resume with: alphagrad train --resume {run}"]
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]

    resumed = run_cli("train", "--resume", run, "--set", f"max_iters={step + 2}").stdout
    assert f"resuming at step {step}" in resumed.splitlines()[0]
    assert resumed.splitlines()[-1].startswith(f"completed: step {step + 2}")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "step"]
    assert steps == list(range(1, step + 3))  # one record per step, none lost or repeated
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert os.path.exists(run / "checkpoints" / f"step-{step + 2:08d}.ckpt")


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, data_dir):
    run = tmp_path / "runs" / "term"
    process = _start("train", "--data", data_dir, "--out", run,
                     *sets("max_iters=100000", "eval_interval=100000", "log_interval=1"))
    try:
        for line in process.stdout:
            if line.startswith("step 2/"):
                process.send_signal(signal.SIGTERM)
                break
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM == 143, err
    assert len(list((run / "checkpoints").glob("step-*.ckpt"))) == 1


def _start(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([*ALPHAGRAD, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> tuple[str, str]:
    try:
        return process.communicate(timeout=120)
    finally:
        process.kill()


def test_two_trainings_started_together_get_their_own_folders(tmp_path, data_dir):
    processes = [_start("train", "--data", data_dir, "--runs-root", tmp_path / "runs",
                        *sets("max_iters=2", "eval_interval=2", "log_interval=1", f"seed={seed}"))
                 for seed in (1, 2)]
    outputs = [_finish(p) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    folders = [Path(out.splitlines()[0].split()[1].rstrip(":")) for out, _ in outputs]
    assert folders[0] != folders[1]
    for folder, seed in zip(folders, (1, 2)):
        assert json.loads((folder / "manifest.json").read_text())["seed"] == seed
        steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").open()
                 if json.loads(line)["kind"] == "step"]
        assert steps == [1, 2]  # one run's records only
    listed = run_cli("runs", "list", "--runs-root", tmp_path / "runs").stdout
    assert {line.split()[0] for line in listed.splitlines()[2:]} == {f.name for f in folders}


def test_resume_of_a_run_that_is_training_names_the_process(tmp_path, data_dir):
    run = tmp_path / "runs" / "busy"
    trainer = _start("train", "--data", data_dir, "--out", run,
                     *sets("max_iters=100000", "eval_interval=100000", "checkpoint_interval=2"))
    try:
        deadline = time.time() + 60
        while not list((run / "checkpoints").glob("step-*.ckpt")) and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run([*ALPHAGRAD, "train", "--resume", str(run)], capture_output=True,
                                text=True, timeout=60, check=False)
        assert second.returncode == 2
        assert second.stderr.startswith(f"error: {run} is in use by process {trainer.pid} ")
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
    # kill -9 leaves no stale lock: the run resumes at once
    latest = max((run / "checkpoints").glob("step-*.ckpt"))
    step = int(latest.stem.split("-")[1])
    resumed = run_cli("train", "--resume", run, "--set", f"max_iters={step + 1}").stdout
    assert resumed.splitlines()[-1].startswith(f"completed: step {step + 1}")


def test_out_elsewhere_is_indexed_in_the_runs_root(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("ALPHAGRAD_RUNS")
    root, out = tmp_path / "myruns", tmp_path / "elsewhere" / "exp"
    alphagrad("train", "--data", data_dir, "--out", out, "--runs-root", root,
              *sets("max_iters=2", "eval_interval=2"), cwd=tmp_path)
    assert not (out.parent / "alphagrad.db").exists()
    listed = alphagrad("runs", "list", "--runs-root", root, cwd=tmp_path).stdout.splitlines()
    assert listed[2].split()[:4] == ["exp", "completed", "-", "2"] and str(out) in listed[2]
    # a resume with no --runs-root updates the index the run was started in
    alphagrad("train", "--resume", out, "--set", "max_iters=3", cwd=tmp_path)
    listed = alphagrad("runs", "list", "--runs-root", root, cwd=tmp_path).stdout.splitlines()
    assert listed[2].split()[:4] == ["exp", "completed", "-", "3"]
    assert not (tmp_path / "runs").exists()  # not the default root's
    # sync refreshes it where it is; a rebuilt index finds it again when its folder is named
    assert alphagrad("runs", "sync", "--runs-root", root, cwd=tmp_path).stdout.startswith("1 runs")
    (root / "alphagrad.db").unlink()
    assert alphagrad("runs", "sync", "--runs-root", root, cwd=tmp_path).stdout.startswith("0 runs")
    synced = alphagrad("runs", "sync", out.parent, "--runs-root", root, cwd=tmp_path).stdout
    assert synced.startswith("1 runs")
    listed = alphagrad("runs", "list", "--runs-root", root, cwd=tmp_path).stdout.splitlines()
    assert listed[2].split()[:4] == ["exp", "completed", "-", "3"] and str(out) in listed[2]

"""The command line as a user runs it: real processes, start to finish, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
    evaluated = alphagrad("eval", "runs/first", "--data", "data", cwd=tmp_path).stdout
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

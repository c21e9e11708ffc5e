"""The example scripts run end to end (as a user runs them: a subprocess) and say true things."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_RUN = ["--threads", "1", "--set", "max_iters=5", "--set", "eval_interval=5",
            "--set", "eval_iters=2", "--final-eval-iters", "2", "--sample-tokens", "20"]


def run_example(name: str, *args: str, cwd: Path, check: bool = True
                ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ALPHAGRAD_SHAKESPEARE"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    if check:
        assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, str]:
    """~20 kB of seeded word salad, lines of 6-12 words."""
    rng = np.random.default_rng(0)
    words = ["the", "king", "queen", "speaks", "of", "night", "and", "day", "my", "lord", "is",
             "gone", "to", "rest", "with", "sweet", "sorrow", "come", "hither", "now"]
    lines = [" ".join(rng.choice(words, size=rng.integers(6, 13))) for _ in range(500)]
    text = "\n".join(lines) + "\n"
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path, text


def test_tour_prints_what_it_promises(tmp_path):
    out = run_example("tour.py", cwd=tmp_path).stdout
    assert "a @ a.T = [[14.0, 32.0], [32.0, 77.0]]" in out  # [[1,2,3],[4,5,6]] times its transpose
    assert "d sum(x^2) / dx = [2.0, 4.0, 6.0]" in out  # 2x at x = 1, 2, 3
    assert "(+3 each) = [5.0, 7.0, 9.0]" in out  # accumulated: 2x + 3
    assert "under no_grad, z.requires_grad = False" in out
    assert "gradcheck(log_softmax) = True" in out
    losses = [float(v) for v in re.findall(r"^step +\d+ +loss (\S+)$", out, re.MULTILINE)]
    vocab = int(re.search(r"vocabulary of (\d+)", out).group(1))
    assert abs(losses[0] - math.log(vocab)) < 0.3  # an untrained GPT predicts about uniformly
    assert losses[-1] < 0.5 * losses[0]
    assert re.search(r"^sample: 'the .{20,}'$", out, re.MULTILINE)


def test_shakespeare_char_example_tiny_run(tmp_path, corpus):
    path, text = corpus
    run_example("train_shakespeare_char.py", "--data", str(path), "--data-dir", "data",
                "--runs", "runs", "--json", "out.json", *TINY_RUN, cwd=tmp_path)
    result = json.loads((tmp_path / "out.json").read_text())
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["vocab_size"] == len(set(text)) + 1  # one id per character, plus <unk>
    assert meta["train_tokens"] + meta["val_tokens"] == len(text)
    assert abs(meta["val_tokens"] / len(text) - 0.1) < 0.01
    assert result["steps"] == 5 and [e["step"] for e in result["evals"]] == [5]
    # five steps at a warm-up learning rate leave the loss near a uniform guess's
    assert abs(result["final_val_loss"] - math.log(meta["vocab_size"])) < 0.5
    assert result["sample"] and set(result["sample"]) <= set(text) | set("<unk>")
    assert (tmp_path / result["run_dir"] / "checkpoints" / "best.ckpt").is_file()


def test_shakespeare_char_example_needs_data(tmp_path):
    result = run_example("train_shakespeare_char.py", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "--data PATH" in result.stderr


def test_bpe_example_tiny_run(tmp_path, corpus):
    path, text = corpus
    out = run_example("train_bpe_gpt.py", "--data", str(path), "--vocab-size", "300",
                      "--data-dir", "data", "--runs", "runs", "--json", "out.json", *TINY_RUN,
                      cwd=tmp_path).stdout
    result = json.loads((tmp_path / "out.json").read_text())
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert result["vocab_size"] == meta["vocab_size"] == 300
    assert meta["train_bytes"] + meta["val_bytes"] == len(text.encode())
    assert meta["train_tokens"] + meta["val_tokens"] < len(text) / 2  # merges compress the words
    assert result["steps"] == 5 and math.isfinite(result["final_val_loss"])
    # the warm-up reaches a learning rate that already pushes down the ids the text never uses
    assert result["final_val_loss"] < math.log(300) - 0.2
    assert "final val loss" in out and "bits per byte" in out

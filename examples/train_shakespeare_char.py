"""nanoGPT's CPU recipe on tinyshakespeare, character by character: prepare, train, sample.

    python examples/train_shakespeare_char.py --data path/to/tinyshakespeare.txt
    python examples/train_shakespeare_char.py --data input.txt --threads 2 --set max_iters=500

The recipe is nanoGPT's small Shakespeare model with its suggested laptop-CPU settings: 4 layers, 4
heads, 128 wide, context 64, batch 12, no dropout, no biases and the exact GELU (nanoGPT's model);
2000 steps of AdamW (beta2 0.99, weight decay 0.1) at learning rate 1e-3 with 100 warm-up steps and
a cosine decay to 1e-4; gradients clipped at norm 1.0. nanoGPT reports a validation loss of about
1.88 for it; over eight seeds the 20-batch figure at step 2000 has median 1.883 here and 1.881 in
PyTorch from nanoGPT's own start, single runs ranging over 1.872-1.900 (benchmarks/README.md), so
any one run may end a little above or below 1.88. As nanoGPT does, the text is cut 90 / 10 into
train / validation (here at the nearest line break); the final validation loss averages 200 batches
(training-time evaluations use 20). A run takes a few minutes on two cores; ``--data`` may also be
given as the ``ALPHAGRAD_SHAKESPEARE`` variable.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from alphagrad import get_num_threads
from alphagrad.tokenizers import CharTokenizer
from alphagrad.train import TrainConfig, Trainer, evaluate, prepare

RECIPE = TrainConfig(
    n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False, gelu_approximate="none",
    batch_size=12, max_iters=2000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
    beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0,
    eval_interval=250, eval_iters=20,
)
FINAL_EVAL_ITERS = 200  # nanoGPT's eval_iters when it reports its final loss
PRINT_EVERY = 100  # steps between progress lines


def prepare_chars(text_path: str | Path, data_dir: str | Path) -> dict:
    """Tokenize ``text_path`` character by character into ``data_dir`` (train.bin, val.bin)."""
    text_path = Path(text_path)
    if not text_path.is_file():
        raise FileNotFoundError(f"corpus file {text_path} does not exist")
    tokenizer = CharTokenizer.train(text_path.read_text(encoding="utf-8"))
    return prepare(text_path, tokenizer, data_dir, val_fraction=0.1)


def print_progress(record: dict[str, Any]) -> None:
    """A Trainer callback: a line every ``PRINT_EVERY`` steps and one per evaluation."""
    step = record["step"]
    if record["kind"] == "step" and (step == 1 or step % PRINT_EVERY == 0):
        eta = record["eta_seconds"]  # None on the first step, which compiles kernels
        print(f"step {step:5d}  loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
              f"{record['tokens_per_sec']:7.0f} tok/s  eta "
              + ("   - s" if eta is None else f"{eta:4.0f} s"), flush=True)
    elif record["kind"] == "eval":
        print(f"eval {step:5d}  train {record['train_loss']:.4f}  val {record['val_loss']:.4f}",
              flush=True)


def train_and_report(config: TrainConfig, runs_root: str | Path = "runs",
                     final_eval_iters: int = FINAL_EVAL_ITERS, prompt: str = "\n",
                     sample_tokens: int = 500) -> dict[str, Any]:
    """Train per ``config`` with progress lines; return the loss curve, timings and a sample.

    ``step_seconds`` adds up the optimizer steps alone; ``wall_seconds`` is the whole ``fit()``,
    evaluations and checkpoints included.
    """
    evals, step_seconds = [], []

    def record(r: dict[str, Any]) -> None:
        if r["kind"] == "eval":
            evals.append({k: r[k] for k in ("step", "train_loss", "val_loss", "val_bits_per_byte")
                          if k in r})
        elif r["kind"] == "step":
            step_seconds.append(r["seconds"])

    trainer = Trainer(config, callbacks=(print_progress, record), runs_root=runs_root)
    c = trainer.config
    print(f"{trainer.model.num_parameters():,} parameters, vocab {trainer.train_data.vocab_size}, "
          f"{len(trainer.train_data):,} train / {len(trainer.val_data):,} val tokens; "
          f"run folder {trainer.run.path}", flush=True)
    started = time.perf_counter()
    trainer.fit(progress=False)  # print_progress shows these lines
    wall = time.perf_counter() - started
    final = evaluate(trainer.model, trainer.val_data, c.batch_size, c.block_size, final_eval_iters,
                     trainer.bytes_per_token)
    sample = trainer.sample((prompt,), sample_tokens)[0]["text"]
    tokens = len(step_seconds) * c.batch_size * c.block_size * c.grad_accum_steps
    return {"steps": trainer.step, "evals": evals, "final_val_loss": final["loss"],
            "final_val_bits_per_byte": final.get("bits_per_byte"),
            "final_eval_iters": final_eval_iters, "step_seconds": sum(step_seconds),
            "wall_seconds": wall, "tokens_per_sec": tokens / sum(step_seconds),
            "num_threads": get_num_threads(),
            "run_dir": str(trainer.run.path), "sample": sample}


def print_report(result: dict[str, Any]) -> None:
    bits = result.get("final_val_bits_per_byte")
    print(f"\nfinal val loss {result['final_val_loss']:.4f} ({result['final_eval_iters']} batches"
          f"{f', {bits:.3f} bits per byte' if bits else ''}) after {result['steps']} steps")
    print(f"wall time {result['wall_seconds']:.1f} s (optimizer steps {result['step_seconds']:.1f}"
          f" s, {result['tokens_per_sec']:,.0f} tokens/s) on {result['num_threads']} threads")
    print(f"\n--- sample ---\n{result['sample']}\n--------------")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("ALPHAGRAD_SHAKESPEARE"),
                        help="the tinyshakespeare text file (or set ALPHAGRAD_SHAKESPEARE)")
    parser.add_argument("--data-dir", default="data/shakespeare_char",
                        help="where the prepared token files go")
    parser.add_argument("--runs", default="runs", help="folder that holds the run folders")
    parser.add_argument("--threads", type=int, help="threads for kernels and BLAS (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainConfig field, e.g. --set max_iters=100")
    parser.add_argument("--final-eval-iters", type=int, default=FINAL_EVAL_ITERS)
    parser.add_argument("--sample-tokens", type=int, default=500)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("give the corpus with --data PATH (or the ALPHAGRAD_SHAKESPEARE variable)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    stats = prepare_chars(args.data, args.data_dir)
    print(f"prepared {args.data}: {stats['train_tokens']:,} train / {stats['val_tokens']:,} val "
          f"characters, vocab {stats['vocab_size']}", flush=True)
    config = RECIPE.with_overrides(args.set).replace(data_dir=str(args.data_dir),
                                                     num_threads=args.threads)
    result = train_and_report(config, args.runs, args.final_eval_iters,
                              sample_tokens=args.sample_tokens)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""The Shakespeare char recipe in PyTorch (CPU, eager), and beside alphagrad: time and val loss.

    python benchmarks/bench_shakespeare_torch.py --data path/to/tinyshakespeare.txt --compare
    python benchmarks/bench_shakespeare_torch.py --data path/to/tinyshakespeare.txt --ours ours.json

``--compare`` trains alphagrad (``examples/train_shakespeare_char.py``, the Trainer API), then
PyTorch, one after the other, and prints the table; without it only PyTorch trains, and
``--ours`` adds the figures from a ``train_shakespeare_char.py --json`` run. Each side trains
once (a full run takes minutes), so on a shared machine the ratio carries the load of the moment:
the load average before and after each side is printed with it.

Both sides get the recipe from the example (``RECIPE``), the same prepared ``train.bin`` /
``val.bin``, the same batches (the library's ``BatchSampler`` seeded with the recipe's seed), the
same evaluation windows (``alphagrad.train.evaluate``), the same learning-rate schedule, the same
starting weights (alphagrad's GPT-2 init under the recipe's seed, copied into the PyTorch model)
and the same thread count (``ag.set_num_threads`` and ``torch.set_num_threads``). The PyTorch
model is nanoGPT's with GPT-2's tanh GELU, tied embedding and output weights, and
``scaled_dot_product_attention``; its optimizer is ``torch.optim.AdamW`` with weight decay on
matrices only, as ``GPT.configure_optimizers``. Optimizer-step seconds time the steps alone;
wall seconds add the evaluations (alphagrad's also its checkpoints and final sample).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import alphagrad as ag
from alphagrad.nn import GPT
from alphagrad.nn.optim.schedules import warmup_cosine
from alphagrad.train import BatchSampler, TokenDataset, TrainConfig, evaluate
from alphagrad.train.trainer import model_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import train_shakespeare_char as example
from bench_gpt import torch_model  # the same PyTorch GPT as the training-step benchmark


def train_torch(config: TrainConfig, final_eval_iters: int) -> dict[str, Any]:
    """Run ``config`` (data, schedule, evaluations) in PyTorch; the same record as the example's."""
    import torch

    c = config.resolved()
    data_dir = Path(c.data_dir)
    train_data, val_data = TokenDataset(data_dir / "train.bin"), TokenDataset(data_dir / "val.bin")
    ag.manual_seed(c.seed)  # as the Trainer does just before it builds the model
    weights = GPT(model_config(c, train_data.vocab_size)).state_dict()
    model = torch_model(model_config(c, train_data.vocab_size))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=c.learning_rate, betas=(c.beta1, c.beta2))
    sampler = BatchSampler(train_data, c.batch_size, c.block_size, c.seed)

    def losses() -> dict[str, Any]:
        with torch.no_grad():
            return {split: evaluate(model, data, c.batch_size, c.block_size, c.eval_iters)["loss"]
                    for split, data in (("train_loss", train_data), ("val_loss", val_data))}

    evals, step_seconds, started = [], 0.0, time.perf_counter()
    for step in range(c.max_iters):
        tick = time.perf_counter()
        lr = warmup_cosine(step, c.learning_rate, c.min_lr, c.warmup_iters, c.lr_decay_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = sampler.next()
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, c.grad_clip or math.inf)  # 0: no clipping
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        seconds = time.perf_counter() - tick
        step_seconds += seconds
        done = step + 1
        example.print_progress({"kind": "step", "step": done, "loss": loss_value, "lr": lr,
                                "tokens_per_sec": c.batch_size * c.block_size / seconds,
                                "eta_seconds": step_seconds / done * (c.max_iters - done)})
        if done % c.eval_interval == 0 or done == c.max_iters:
            evals.append({"kind": "eval", "step": done, **losses()})
            example.print_progress(evals[-1])
    wall = time.perf_counter() - started
    with torch.no_grad():
        final = evaluate(model, val_data, c.batch_size, c.block_size, final_eval_iters)["loss"]
    return {"steps": c.max_iters, "evals": evals, "final_val_loss": final,
            "final_eval_iters": final_eval_iters, "step_seconds": step_seconds,
            "wall_seconds": wall,
            "tokens_per_sec": c.max_iters * c.batch_size * c.block_size / step_seconds,
            "num_threads": torch.get_num_threads()}


def timed_side(name: str, run) -> dict[str, Any]:
    print(f"\n=== {name} ===", flush=True)
    before = os.getloadavg()[0]
    result = run()
    return result | {"load_before": before, "load_after": os.getloadavg()[0]}


def print_table(sides: dict[str, dict[str, Any]]) -> None:
    """One column per side, and the PyTorch / alphagrad time ratio when both ran."""
    both = {"alphagrad", "PyTorch"} <= sides.keys()

    def row(label: str, cells: list[str], ratio: str = "") -> str:
        return "| " + " | ".join([label, *cells, *([ratio] if both else [])]) + " |"

    def ratio(key: str) -> str:
        return f"{sides['PyTorch'][key] / sides['alphagrad'][key]:.2f}" if both else ""

    lines = [row("", list(sides), "time PyTorch / alphagrad"),
             "|" + "---|" * (len(sides) + 1 + both),
             row("optimizer-step seconds", [f"{s['step_seconds']:.1f}" for s in sides.values()],
                 ratio("step_seconds")),
             row("wall seconds", [f"{s['wall_seconds']:.1f}" for s in sides.values()],
                 ratio("wall_seconds")),
             row("tokens / s (steps)", [f"{s['tokens_per_sec']:,.0f}" for s in sides.values()]),
             row("load average before / after", [
                 f"{s['load_before']:.1f} / {s['load_after']:.1f}" if "load_before" in s else "-"
                 for s in sides.values()])]
    for step in sorted({e["step"] for s in sides.values() for e in s["evals"]}):
        lines.append(row(f"val loss at step {step}", [
            next((f"{e['val_loss']:.4f}" for e in s["evals"] if e["step"] == step), "-")
            for s in sides.values()]))
    batches = next(iter(sides.values()))["final_eval_iters"]
    lines.append(row(f"final val loss ({batches} batches)",
                     [f"{s['final_val_loss']:.4f}" for s in sides.values()]))
    threads = sorted({s["num_threads"] for s in sides.values()})
    print(f"\nthreads: {', '.join(map(str, threads))}", *lines, sep="\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("ALPHAGRAD_SHAKESPEARE"),
                        help="the tinyshakespeare text file (or set ALPHAGRAD_SHAKESPEARE)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--compare", action="store_true", help="train alphagrad first, then PyTorch")
    parser.add_argument("--ours", help="a train_shakespeare_char.py --json file to compare with")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field (both sides), e.g. --set max_iters=100")
    parser.add_argument("--final-eval-iters", type=int, default=example.FINAL_EVAL_ITERS)
    parser.add_argument("--json", help="also write every side's figures to this file")
    args = parser.parse_args()
    if not args.data:
        parser.error("give the corpus with --data PATH (or the ALPHAGRAD_SHAKESPEARE variable)")
    try:
        import torch
    except ImportError:
        sys.exit("this benchmark needs PyTorch: pip install -e '.[bench]'")
    ag.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    sides: dict[str, dict[str, Any]] = {}
    if args.ours:
        sides["alphagrad"] = json.loads(Path(args.ours).read_text())
    with tempfile.TemporaryDirectory() as work:
        example.prepare_chars(args.data, Path(work, "data"))
        config = example.RECIPE.with_overrides(args.set).replace(data_dir=str(Path(work, "data")),
                                                         num_threads=args.threads)
        if args.compare:
            sides["alphagrad"] = timed_side("alphagrad", lambda: example.train_and_report(
                config, Path(work, "runs"), args.final_eval_iters, sample_tokens=100))
        sides["PyTorch"] = timed_side("PyTorch", lambda: train_torch(config, args.final_eval_iters))
    print_table(sides)
    if args.json:
        Path(args.json).write_text(json.dumps(sides, indent=2) + "\n")


if __name__ == "__main__":
    main()

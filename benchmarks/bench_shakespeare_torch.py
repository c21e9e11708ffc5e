"""The Shakespeare char recipe in PyTorch (CPU, eager), and beside alphagrad: time and val loss.

    python benchmarks/bench_shakespeare_torch.py --data path/to/tinyshakespeare.txt --compare
    python benchmarks/bench_shakespeare_torch.py --data path/to/tinyshakespeare.txt --seeds 1 2 3
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
model is nanoGPT's (the recipe's GELU form, tied embedding and output weights,
``scaled_dot_product_attention``); its optimizer is ``torch.optim.AdamW`` with weight decay on
matrices only, as ``GPT.configure_optimizers``. Optimizer-step seconds time the steps alone;
wall seconds add the evaluations (alphagrad's also its checkpoints and final sample).

``--seeds`` measures the recipe's spread instead: for each seed, alphagrad trains, then PyTorch
trains from its own start as nanoGPT does (GPT-2 init under ``torch.manual_seed(seed)``, batches
from ``torch.randint``); both are scored on the same evaluation windows. It prints the losses per
seed, their medians, and the median time ratio of the interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import alphagrad as ag
from alphagrad.nn import GPT
from alphagrad.nn.optim.schedules import warmup_cosine
from alphagrad.train import BatchSampler, TokenDataset, TrainConfig, evaluate
from alphagrad.train.trainer import model_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import train_shakespeare_char as example
from bench_gpt import torch_model  # the same PyTorch GPT as the training-step benchmark


def gpt2_init_(model: Any, n_layer: int) -> None:
    """GPT-2's initialisation as nanoGPT applies it: weights N(0, 0.02), the residual projections
    N(0, 0.02/sqrt(2·n_layer)), biases zero, layer-norm gains one."""
    import torch

    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
            torch.nn.init.normal_(p, mean=0.0, std=std)


def torch_batches(dataset: TokenDataset, batch_size: int, block_size: int):
    """nanoGPT's ``get_batch``: windows at offsets drawn by ``torch.randint``."""
    import torch

    data = torch.from_numpy(np.asarray(dataset.tokens, dtype=np.int64))

    def next_batch():
        starts = torch.randint(len(data) - block_size, (batch_size,)).tolist()
        return (torch.stack([data[i:i + block_size] for i in starts]),
                torch.stack([data[i + 1:i + 1 + block_size] for i in starts]))

    return next_batch


def train_torch(config: TrainConfig, final_eval_iters: int,
                own_start: bool = False) -> dict[str, Any]:
    """Run ``config`` (data, schedule, evaluations) in PyTorch; the same record as the example's.

    By default PyTorch starts from alphagrad's initial weights and draws alphagrad's batches;
    ``own_start`` starts it as nanoGPT does instead (see the module's docstring).
    """
    import torch

    c = config.resolved()
    data_dir = Path(c.data_dir)
    train_data, val_data = TokenDataset(data_dir / "train.bin"), TokenDataset(data_dir / "val.bin")
    model = torch_model(model_config(c, train_data.vocab_size))
    if own_start:
        torch.manual_seed(c.seed)
        gpt2_init_(model, c.n_layer)
        next_batch = torch_batches(train_data, c.batch_size, c.block_size)
    else:
        ag.manual_seed(c.seed)  # as the Trainer does just before it builds the model
        weights = GPT(model_config(c, train_data.vocab_size)).state_dict()
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
        next_batch = BatchSampler(train_data, c.batch_size, c.block_size, c.seed).next
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=c.learning_rate, betas=(c.beta1, c.beta2))

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
        x, y = next_batch()
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


def print_seeds(runs: dict[int, dict[str, dict[str, Any]]]) -> None:
    """Per seed, each side's val loss at the last evaluation and on the final windows; medians."""
    any_side = next(iter(runs.values()))["alphagrad"]
    step, batches = any_side["evals"][-1]["step"], any_side["final_eval_iters"]
    columns = [(f"{side} val @ {step}", lambda r, side=side: r[side]["evals"][-1]["val_loss"])
               for side in ("alphagrad", "PyTorch")]
    columns += [(f"{side} final ({batches} batches)",
                 lambda r, side=side: r[side]["final_val_loss"]) for side in ("alphagrad", "PyTorch")]
    lines = ["| seed | " + " | ".join(name for name, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for seed, r in runs.items():
        lines.append(f"| {seed} | " + " | ".join(f"{get(r):.4f}" for _, get in columns) + " |")
    lines.append("| median | " + " | ".join(
        f"{statistics.median(get(r) for r in runs.values()):.4f}" for _, get in columns) + " |")
    ratios = [r["PyTorch"]["step_seconds"] / r["alphagrad"]["step_seconds"] for r in runs.values()]
    print(f"\nthreads: {any_side['num_threads']}", *lines, sep="\n")
    print(f"optimizer-step time PyTorch / alphagrad: median {statistics.median(ratios):.2f} "
          f"(runs: {', '.join(f'{x:.2f}' for x in ratios)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("ALPHAGRAD_SHAKESPEARE"),
                        help="the tinyshakespeare text file (or set ALPHAGRAD_SHAKESPEARE)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--compare", action="store_true", help="train alphagrad first, then PyTorch")
    parser.add_argument("--ours", help="a train_shakespeare_char.py --json file to compare with")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                        help="train both sides once per seed, PyTorch from its own start")
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
        if args.seeds:
            runs = {}
            for seed in args.seeds:
                seeded = config.replace(seed=seed)
                ours = partial(example.train_and_report, seeded, Path(work, "runs"),
                               args.final_eval_iters, sample_tokens=100)
                theirs = partial(train_torch, seeded, args.final_eval_iters, own_start=True)
                runs[seed] = {"alphagrad": timed_side(f"alphagrad, seed {seed}", ours),
                              "PyTorch": timed_side(f"PyTorch, seed {seed}", theirs)}
            print_seeds(runs)
            results: dict[Any, Any] = runs
        else:
            if args.compare:
                sides["alphagrad"] = timed_side("alphagrad", lambda: example.train_and_report(
                    config, Path(work, "runs"), args.final_eval_iters, sample_tokens=100))
            sides["PyTorch"] = timed_side("PyTorch",
                                          lambda: train_torch(config, args.final_eval_iters))
            print_table(sides)
            results = sides
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

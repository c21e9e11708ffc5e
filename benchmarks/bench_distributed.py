"""Data-parallel training speed: 1 process against 2 MPI ranks, and the cost of an all-reduce.

    python benchmarks/bench_distributed.py                       # char-medium, 3 rounds
    python benchmarks/bench_distributed.py --config char-small --rounds 5 --steps 8

Three ways to spend this machine's cores on the same training step (forward, loss, backward,
gradient averaging, clipping at 1.0, AdamW), each in processes of their own:

    1 rank x 1 thread      the whole global batch in one single-threaded process
    1 rank x 2 threads     the same, with 2 kernel and BLAS threads
    2 ranks x 1 thread     mpiexec -n 2: each rank half of the batch, gradients all-reduced
                           in buckets as backward produces them (alphagrad.train.distributed)

Both use the same global batch (strong scaling), so tokens/s compare directly; scaling
efficiency is the 2-rank speed over twice the 1-rank speed. The rounds run the three one after
another (A B C A B C ...) and each figure is the median. The 2-rank run also reports how long a
step waits on communication after backward (what the overlap did not hide) and the time of one
blocking ``Allreduce`` of the model's whole gradient (float32) between the 2 ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from bench_gpt import CONFIGS, blas_core, cpu_name, model_config  # this script's folder

import alphagrad as ag
from alphagrad.nn.utils import clip_grad_norm_
from alphagrad.tensor.memory import keep_freed_memory
from alphagrad.train.distributed import GradientReducer, current_world, find_mpiexec
from alphagrad.train.mfu import peak_flops

LR, BETAS, WEIGHT_DECAY, CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0
MODES = [("1 rank x 1 thread", 1, 1), ("1 rank x 2 threads", 1, 2), ("2 ranks x 1 thread", 2, 1)]


def worker(config_name: str, threads: int, steps: int, warmup: int) -> None:
    """Time ``steps`` training steps on this rank's share of the batch; rank 0 prints JSON."""
    world = current_world()
    ag.set_num_threads(threads)
    keep_freed_memory()
    ag.manual_seed(0)
    config, batch = model_config(config_name)
    model = ag.nn.GPT(config)
    optimizer = model.configure_optimizers(WEIGHT_DECAY, LR, BETAS)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    reducer = GradientReducer(params, world)
    rng = np.random.default_rng(world.rank)
    rows = batch // world.size
    idx = rng.integers(0, config.vocab_size, (rows, config.block_size + 1))
    x, y = np.ascontiguousarray(idx[:, :-1]), np.ascontiguousarray(idx[:, 1:])
    step_times, waits = [], []
    for step in range(warmup + steps):
        started = time.perf_counter()
        _, loss = model(x, y)
        loss.backward()
        backward_done = time.perf_counter()
        reducer.wait(loss.item())
        waited = time.perf_counter() - backward_done
        clip_grad_norm_(params, CLIP)
        optimizer.step()
        optimizer.zero_grad()
        if step >= warmup:
            step_times.append(time.perf_counter() - started)
            waits.append(waited)
    # every rank's slowest step sets the pace; report rank 0's view of the medians
    step_time = statistics.median(step_times)
    result = {"tokens_per_sec": batch * config.block_size / step_time,
              "step_seconds": step_time, "wait_seconds": statistics.median(waits),
              "parameters": sum(p.numel() for p in params)}
    if world.size > 1:
        result["allreduce_seconds"] = _allreduce_seconds(world, result["parameters"])
    if world.is_main:
        print("RESULT " + json.dumps(result), flush=True)


def _allreduce_seconds(world, count: int, repeats: int = 7) -> float:
    from mpi4py import MPI

    send, recv = np.ones(count, np.float32), np.empty(count, np.float32)
    times = []
    for _ in range(repeats + 1):
        world.comm.Barrier()
        started = time.perf_counter()
        world.comm.Allreduce(send, recv, op=MPI.SUM)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def run_mode(ranks: int, threads: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", "--config", args.config,
               "--threads", str(threads), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if ranks > 1:
        command = [find_mpiexec(), "-n", str(ranks), "--bind-to", "core"] + (
            ["--allow-run-as-root"] if os.geteuid() == 0 else []) + command
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if "RESULT " in line)
    return json.loads(line.split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="char-medium")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.config, args.threads, args.steps, args.warmup)
        return
    results: dict[str, list[dict]] = {name: [] for name, _, _ in MODES}
    for round_ in range(args.rounds):
        for name, ranks, threads in MODES:
            results[name].append(run_mode(ranks, threads, args))
            print(f"round {round_ + 1}, {name}: {results[name][-1]['tokens_per_sec']:,.0f} tok/s",
                  file=sys.stderr, flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    one, two_threads = median(MODES[0][0], "tokens_per_sec"), median(MODES[1][0], "tokens_per_sec")
    vocab, T, layers, heads, width, batch = CONFIGS[args.config]
    params = results[MODES[0][0]][0]["parameters"]
    peaks = []
    for threads in (1, 2):
        ag.set_num_threads(threads)
        peaks.append(peak_flops(threads, n=2048, repeats=5) / 1e9)
    print(f"{args.config} ({vocab}, {T}, {layers}, {heads}, {width}, global batch {batch}), "
          f"{params / 1e6:.2f}M parameters; medians of {args.rounds} rounds x {args.steps} steps")
    print(f"CPU {cpu_name()}; float32 GEMM peak (2048^3, NumPy with OpenBLAS {blas_core()} "
          f"kernels): {peaks[0]:.1f} GFLOP/s at 1 thread, {peaks[1]:.1f} at 2\n")
    print("| mode | tok/s | step ms | vs 1x1 | vs 1x2 | comm wait ms |")
    print("|---|---|---|---|---|---|")
    for name, _, _ in MODES:
        tps = median(name, "tokens_per_sec")
        print(f"| {name} | {tps:,.0f} | {1e3 * median(name, 'step_seconds'):.0f} | "
              f"{tps / one:.2f}x | {tps / two_threads:.2f}x | "
              f"{1e3 * median(name, 'wait_seconds'):.1f} |")
    two = median(MODES[2][0], "tokens_per_sec")
    print(f"\nscaling efficiency, 2 ranks: {two / (2 * one):.0%}")
    seconds = median(MODES[2][0], "allreduce_seconds")
    print(f"Allreduce of the whole gradient ({params * 4 / 1e6:.1f} MB float32, 2 ranks): "
          f"{1e3 * seconds:.1f} ms ({params * 4 / seconds / 1e9:.2f} GB/s)")


if __name__ == "__main__":
    main()

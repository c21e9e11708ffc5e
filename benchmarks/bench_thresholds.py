"""Where two threads start to pay: each kernel's serial twin against its parallel form.

    python benchmarks/bench_thresholds.py [--threads N] [--rounds R]
    NUMBA_THREADING_LAYER=workqueue python benchmarks/bench_thresholds.py

A kernel takes its parallel form when ``use_parallel`` says so: from a threshold of work
(elements, or B·NH·Tq·Tk·hs for attention) on Numba's OpenMP layer, and ``WORKQUEUE_FACTOR``
times that on any other, whose workers sleep between loops. This script times both forms of
softmax, layer norm, GELU, cross-entropy (forward + backward through the kernel functions) and
causal attention (forward + backward, q, k, v views of one qkv buffer) on the same arrays, the
two forms alternating, and prints the medians in milliseconds. A ratio below 1 means the
parallel form wins at that size; the last column is the form the library picks there, on the
layer in use. To time both forms the script moves the switch-over point for itself (the
threshold's factor set to 0, then to infinity).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np

from alphagrad.tensor import set_num_threads
from alphagrad.tensor.kernels import _serial, attention, cross_entropy, gelu, layernorm, softmax
from alphagrad.tensor.memory import keep_freed_memory

ROWS_COLS = [(1024, 256), (4096, 256), (4096, 512), (8192, 512), (8192, 1024)]
ATTENTION = [(2, 4, 64, 16), (16, 4, 64, 16), (8, 4, 128, 32), (16, 4, 128, 32),
             (2, 6, 256, 64), (32, 4, 128, 32)]  # B, NH, T, hs
FACTORS = {"serial": float("inf"), "parallel": 0}


def row_cases(rng: np.random.Generator, rows: int, cols: int):
    """(name, work, threshold, fn) for each row-wise kernel over one (rows, cols) array."""
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    w, b = np.ones(cols, np.float32), np.zeros(cols, np.float32)
    targets = rng.integers(0, cols, rows)
    dlosses = np.ones(rows, np.float32)

    def softmax_pass():
        softmax.softmax_backward(softmax.softmax_forward(x), x)

    def layernorm_pass():
        _, mean, rstd = layernorm.layernorm_forward(x, w, b)
        layernorm.layernorm_backward(x, x, w, mean, rstd)

    def gelu_pass():
        gelu.gelu_backward(x, gelu.gelu_forward(x))

    def cross_entropy_pass():
        _, lse = cross_entropy.cross_entropy_forward(x, targets)
        cross_entropy.cross_entropy_backward(x, targets, lse, dlosses)

    return [("softmax", x.size, softmax.PARALLEL_MIN_SIZE, softmax_pass),
            ("layer norm", x.size, layernorm.PARALLEL_MIN_SIZE, layernorm_pass),
            ("GELU", x.size, gelu.PARALLEL_MIN_SIZE, gelu_pass),
            ("cross-entropy", x.size, cross_entropy.PARALLEL_MIN_SIZE, cross_entropy_pass)]


def attention_case(rng: np.random.Generator, B: int, NH: int, T: int, hs: int):
    qkv = rng.standard_normal((B, T, 3, NH, hs), dtype=np.float32)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    dout = rng.standard_normal(q.shape, dtype=np.float32)
    scale = 1 / hs ** 0.5

    def attention_pass():
        out, lse = attention.attention_forward(q, k, v, scale)
        attention.attention_backward(dout, q, k, v, out, lse, scale)

    return ("attention", B * NH * T * T * hs, attention.PARALLEL_MIN_WORK, attention_pass)


def time_forms(fn: Callable[[], None], rounds: int, calls: int = 5) -> dict[str, float]:
    """Median milliseconds per call of ``fn`` in each form, the forms alternating."""
    times = {form: [] for form in FACTORS}
    for r in range(rounds + 1):
        for form, factor in FACTORS.items():
            _serial._FACTOR = factor
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            if r:  # the first round compiles and warms the caches
                times[form].append((time.perf_counter() - start) / calls * 1e3)
    return {form: statistics.median(t) for form, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    set_num_threads(args.threads)
    keep_freed_memory()
    factor = _serial._FACTOR  # the library's own, for the "picks" column
    print(f"threading layer {numba.config.THREADING_LAYER}, {args.threads} threads, float32, "
          f"medians of {args.rounds} alternating rounds; parallel needs {factor}x each threshold")
    print(f"{'kernel':<14} {'size':>16} {'work':>10} {'serial ms':>10} {'parallel ms':>12} "
          f"{'par/ser':>8} {'picks':>9}")
    rng = np.random.default_rng(0)
    cases = [(f"{r} x {c}", case) for r, c in ROWS_COLS for case in row_cases(rng, r, c)]
    cases += [(str(shape), attention_case(rng, *shape)) for shape in ATTENTION]
    for size, (name, work, threshold, fn) in cases:
        ms = time_forms(fn, args.rounds)
        _serial._FACTOR = factor
        picks = "parallel" if _serial.use_parallel(work, threshold) else "serial"
        print(f"{name:<14} {size:>16} {work:>10,} {ms['serial']:>10.3f} {ms['parallel']:>12.3f} "
              f"{ms['parallel'] / ms['serial']:>8.2f} {picks:>9}", flush=True)


if __name__ == "__main__":
    main()

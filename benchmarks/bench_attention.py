"""Causal attention: our Numba kernels vs the NumPy reference vs PyTorch's SDPA (if installed).

    python benchmarks/bench_attention.py [--threads N] [--repeats R] [--steps N] [--settle S]

q, k, v are views of one (B, T, 3, NH, hs) float32 buffer, as a GPT's c_attn produces them.
Sides run interleaved (A B C A B C ...) at the same thread count, each sample a run of
--steps calls back to back (the time shown is per call), with a pause of --settle seconds
before each run: OpenBLAS's threads (NumPy) and OpenMP's (torch) keep spinning on the cores for
a while after a call returns, and without the pause the next side, whichever it is, runs its
threads beside them (measured here: our two-thread attention at half its speed right after
NumPy's reference). Each run starts with one untimed call, which wakes the cores and the
side's thread pool: after a pause torch's first calls took up to 20x a warm one here (a decoding
step 130-570 µs against 28), which a model's layers, called back to back, do not pay. The table
shows medians in milliseconds and the ratios ours/reference and ours/torch (below 1 means ours
is faster).
A second table times one decoding step: a single query row against Tk cached keys and values,
in runs of DECODE_STEPS calls as a decoding loop makes them (calls alternating one by one
between the sides measured each beside the threads the other had left spinning).

The process keeps freed memory for reuse (``keep_freed_memory``), as a training process does
from its first ``backward()``: otherwise each call's fresh outputs (dq, dk, dv: 6 MB at
(32, 4, 128, 32)) are new pages that the kernel faults in, 1.2 of 4.5 ms of our backward there,
which no training step pays (torch's caching allocator spares its side the same way).

GFLOP/s count model FLOPs causally: only the (query, key) pairs the mask keeps, 2·hs FLOPs per
pair and product, two products forward (q kᵀ, P v) and four more backward (dv, dP, dq, dk); the
scores a backward recomputes are not counted. `sgemm` is NumPy's own GEMM rate at each shape,
q @ kᵀ batched over (B, NH) with all T x T products counted: what the same arithmetic reaches
as plain matrix products. The header gives the CPU and NumPy's sgemm peak at 2048 x 2048.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from alphagrad.tensor import get_num_threads, set_num_threads
from alphagrad.tensor.kernels import attention, reference
from alphagrad.tensor.memory import keep_freed_memory
from alphagrad.tensor.threads import blas_threads

SHAPES = [(16, 4, 64, 16), (32, 4, 128, 32), (8, 6, 256, 64), (2, 12, 256, 64)]  # B, NH, T, hs
DECODE_SHAPES = [(1, 6, 256, 64), (1, 12, 1024, 64), (4, 12, 1024, 64)]  # B, NH, Tk, hs
DECODE_STEPS = 20


def qkv_views(rng: np.random.Generator, B: int, NH: int, T: int, hs: int):
    qkv = rng.standard_normal((B, T, 3, NH, hs), dtype=np.float32)
    return [qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3)]  # 3 x (B, NH, T, hs)


def ours(q, k, v, dout, scale, backward):
    out, lse = attention.attention_forward(q, k, v, scale)
    if backward:
        attention.attention_backward(dout, q, k, v, out, lse, scale)


def numpy_reference(q, k, v, dout, scale, backward):
    with blas_threads(get_num_threads()):  # NumPy's matmul on BLAS's own threads, as without us
        reference.attention_forward(q, k, v, scale)
        if backward:
            reference.attention_backward(dout, q, k, v, scale)


def torch_side(torch):
    def run(q, k, v, dout, scale, backward):
        with torch.set_grad_enabled(backward):
            # one query row sees every key; torch's is_causal would align it with the first
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=q.shape[2] == k.shape[2], scale=scale)
            if backward:
                torch.autograd.grad(out, (q, k, v), dout)
    return run


def causal_flops(q_shape: tuple, Tk: int, backward: bool) -> int:
    """Model FLOPs of one call: 2·hs per visible (query, key) pair per product."""
    B, NH, Tq, hs = q_shape
    pairs = Tq * (Tq + 1) // 2 + Tq * (Tk - Tq)  # query i sees keys up to i + Tk - Tq
    return (6 if backward else 2) * 2 * hs * B * NH * pairs


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def sgemm_gflops(a: np.ndarray, b: np.ndarray, repeats: int) -> float:
    """NumPy's rate for a @ b (batched over leading axes) on BLAS's own threads, median of
    ``repeats`` calls."""
    out = np.matmul(a, b)
    times = []
    with blas_threads(get_num_threads()):
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
    return 2 * a.size * b.shape[-1] / statistics.median(times) / 1e9


def first_call_seconds() -> list[str]:
    """Time the first call of each kernel: a compile, or a load from Numba's cache."""
    q, k, v = qkv_views(np.random.default_rng(0), 1, 1, 3, 2)
    lines = []
    for kernel_fn, call in (
        (attention._attention_forward, lambda: attention.attention_forward(q, k, v, 1.0)),
        (attention._attention_backward, lambda: attention.attention_backward(
            q, q, k, v, *attention.attention_forward(q, k, v, 1.0), 1.0)),
    ):
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        how = "cache load" if kernel_fn.stats.cache_hits else "compile"
        lines.append(f"{kernel_fn.__name__}: first call {seconds:.2f} s ({how})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=get_num_threads())
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=3, help="calls back to back per sample")
    parser.add_argument("--settle", type=float, default=0.3,
                        help="seconds to pause before each timed call or run (0: back to back)")
    args = parser.parse_args()
    set_num_threads(args.threads)
    keep_freed_memory()
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    print(f"threads: {args.threads}, float32, medians of {args.repeats} interleaved repeats, "
          f"runs of {args.steps} calls ({DECODE_STEPS} in decoding) after {args.settle} s of pause "
          "and one untimed call")
    square = np.random.default_rng(1).standard_normal((2048, 2048), dtype=np.float32)
    print(f"{cpu_model()}; NumPy sgemm peak (2048 x 2048): "
          f"{sgemm_gflops(square, square, 5):.0f} GFLOP/s")
    print("\n".join(first_call_seconds()))

    header = f"{'pass':>8} {'ours ms':>9} {'GFLOP/s':>8} {'numpy ms':>9} {'ours/np':>8}"
    sgemm_header = f"{'sgemm':>8}"
    if torch is not None:
        header += f" {'torch ms':>9} {'GFLOP/s':>8} {'ours/torch':>10}"
    rng = np.random.default_rng(0)
    print(f"{'B, NH, T, hs':>16} {header} {sgemm_header}")
    for B, NH, T, hs in SHAPES:
        q, k, v = qkv_views(rng, B, NH, T, hs)
        dout = rng.standard_normal((B, NH, T, hs), dtype=np.float32)
        sgemm = sgemm_gflops(np.ascontiguousarray(q), np.ascontiguousarray(k.swapaxes(2, 3)),
                             args.repeats)
        for backward in (False, True):
            row = time_sides(torch, (q, k, v, dout), backward, args.repeats, args.settle,
                             args.steps)
            print(f"{(B, NH, T, hs)!s:>16} {row} {sgemm:8.1f}")
    print(f"\ndecoding one row\n{'B, NH, Tk, hs':>16} {header}")
    for B, NH, Tk, hs in DECODE_SHAPES:
        cache = rng.standard_normal((2, B, NH, Tk, hs), dtype=np.float32)  # a KV cache
        q = rng.standard_normal((B, NH, 1, hs), dtype=np.float32)
        row = time_sides(torch, (q, cache[0], cache[1], q), False, args.repeats, args.settle,
                         DECODE_STEPS)
        print(f"{(B, NH, Tk, hs)!s:>16} {row}")


def time_sides(torch, arrays: tuple, backward: bool, repeats: int, settle: float,
               steps: int) -> str:
    """One table row: every side on ``arrays`` (q, k, v, dout), interleaved, medians of the
    time per call; each sample is ``steps`` calls back to back after ``settle`` s of pause and
    one untimed call."""
    scale = 1 / arrays[0].shape[-1] ** 0.5
    sides = {"ours": (ours, arrays), "numpy": (numpy_reference, arrays)}
    if torch is not None:
        # inputs that need no gradient take torch's inference path, as a decoding loop would
        tq, tk, tv = (torch.from_numpy(a).requires_grad_(backward) for a in arrays[:3])
        sides["torch"] = (torch_side(torch), (tq, tk, tv, torch.from_numpy(arrays[3])))
    times = {name: [] for name in sides}
    for repeat in range(repeats + 1):
        for name, (fn, inputs) in sides.items():
            time.sleep(settle)
            fn(*inputs, scale, backward)  # wakes the cores and the side's threads, untimed
            start = time.perf_counter()
            for _ in range(steps):
                fn(*inputs, scale, backward)
            if repeat:  # the first round warms caches and compiles
                times[name].append((time.perf_counter() - start) / steps)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    mflop = causal_flops(arrays[0].shape, arrays[1].shape[2], backward) / 1e6
    row = (f"{'fwd+bwd' if backward else 'fwd':>8} {ms['ours']:9.3f} {mflop / ms['ours']:8.1f} "
           f"{ms['numpy']:9.3f} {ms['ours'] / ms['numpy']:8.3f}")
    if torch is not None:
        row += f" {ms['torch']:9.3f} {mflop / ms['torch']:8.1f} {ms['ours'] / ms['torch']:10.3f}"
    return row


if __name__ == "__main__":
    main()

"""The kernel pairs (GELU, softmax, layer norm, cross-entropy, embedding, AdamW): ours vs the NumPy
reference vs PyTorch's CPU ops (if installed), float32, at one thread count on every side.

    python benchmarks/bench_kernels.py [--threads N] [--rounds R]
    python benchmarks/bench_kernels.py --api        # the public functions through autograd

Each round gives every side a turn of about 20 ms (ours, numpy, torch, ours, ...), timing each
call; the table shows the median call in milliseconds and the ratios numpy/ours and torch/ours
(above 1 means ours is faster). First calls, which compile or load the Numba cache, are timed
apart and excluded.

``--api`` times what a user's code runs instead: ``F.softmax``, ``F.layer_norm``, ``F.gelu`` and
``F.cross_entropy`` on fresh tensors that require grad, forward and ``backward()`` through the
autograd engine, against the same calls in PyTorch; every call wraps new tensors around the same
arrays (``from_numpy`` on both sides, no copy), so each pays for its outputs and gradients.

glibc's default allocator hands big buffers back to the OS on free and page-faults fresh, zeroed
memory for the next one, more or less at random depending on allocation order; that cost swamps
the kernels and lands on whichever side is unlucky. So, unless ``--malloc-default`` is given, the
process keeps freed memory for reuse (``mallopt``: mmap and trim thresholds at 1 GiB), the same
for every side, as the usual jemalloc/tcmalloc advice for PyTorch on CPU does.

Idle threads sleep on both sides: both OpenMP pools (ours, under Numba, and PyTorch's) get
``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set, before either library loads its
OpenMP runtime. (With OpenMP's default, idle workers spin after every op and take the cores from
whatever runs next, the other side's kernels included.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when an OpenMP runtime loads

import numpy as np

from alphagrad.tensor import get_num_threads, keep_freed_memory, set_num_threads
from alphagrad.tensor import kernels as K
from alphagrad.tensor.kernels import adamw, cross_entropy, embedding, gelu, layernorm, softmax
from alphagrad.tensor.kernels import reference as R

ROWS_C = [(8192, 384), (4096, 65)]
CASES = [(name, shape) for name in ("gelu", "gelu_exact", "softmax", "layernorm", "cross_entropy",
                                     "embedding", "adamw")
         for shape in ROWS_C + ([(1024, 50304)] if name == "cross_entropy" else [])]
VOCAB = {384: 50304, 65: 65}  # embedding tables: GPT-2's vocabulary at C=384, characters at C=65
ROUND_SECONDS = 0.02  # each side's turn in a round repeats its call for about this long


def gelu_case(rng, N, C, torch, approximate="tanh"):
    x, dout = rng.standard_normal((N, C), dtype=np.float32), rng.standard_normal((N, C), np.float32)
    form = {"approximate": approximate}
    sides = {
        "ours": (lambda: K.gelu_forward(x, **form),
                 lambda: (K.gelu_forward(x, **form), K.gelu_backward(x, dout, **form))),
        "numpy": (lambda: R.gelu_forward(x, **form),
                  lambda: (R.gelu_forward(x, **form), R.gelu_backward(x, dout, **form))),
    }
    if torch:
        F = torch.nn.functional
        tx, tdout = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dout)
        sides["torch"] = (
            no_grad(torch, lambda: F.gelu(tx, **form)),
            lambda: torch.autograd.grad(F.gelu(tx, **form), tx, tdout),
        )
    return sides


def softmax_case(rng, N, C, torch):
    x, dout = rng.standard_normal((N, C), dtype=np.float32), rng.standard_normal((N, C), np.float32)
    sides = {
        "ours": (lambda: K.softmax_forward(x),
                 lambda: K.softmax_backward(K.softmax_forward(x), dout)),
        "numpy": (lambda: R.softmax_forward(x),
                  lambda: R.softmax_backward(R.softmax_forward(x), dout)),
    }
    if torch:
        tx, tdout = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dout)
        sides["torch"] = (no_grad(torch, lambda: torch.softmax(tx, -1)),
                          lambda: torch.autograd.grad(torch.softmax(tx, -1), tx, tdout))
    return sides


def layernorm_case(rng, N, C, torch):
    x, dout = rng.standard_normal((N, C), dtype=np.float32), rng.standard_normal((N, C), np.float32)
    w, b = rng.standard_normal(C, dtype=np.float32), rng.standard_normal(C, dtype=np.float32)

    def fwd_bwd(lib):
        def run():
            _, mean, rstd = lib.layernorm_forward(x, w, b)
            return lib.layernorm_backward(dout, x, w, mean, rstd)
        return run

    sides = {"ours": (lambda: K.layernorm_forward(x, w, b), fwd_bwd(K)),
             "numpy": (lambda: R.layernorm_forward(x, w, b), fwd_bwd(R))}
    if torch:
        F = torch.nn.functional
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        tdout = torch.from_numpy(dout)
        sides["torch"] = (
            no_grad(torch, lambda: F.layer_norm(tx, (C,), tw, tb)),
            lambda: torch.autograd.grad(F.layer_norm(tx, (C,), tw, tb), (tx, tw, tb), tdout),
        )
    return sides


def cross_entropy_case(rng, N, V, torch):
    logits = rng.standard_normal((N, V), dtype=np.float32)
    targets = rng.integers(0, V, N)
    dlosses = np.full(N, 1.0 / N, np.float32)  # reduction="mean"

    def fwd(lib):
        return lambda: lib.cross_entropy_forward(logits, targets)[0].mean()

    def fwd_bwd(lib):
        def run():
            losses, lse = lib.cross_entropy_forward(logits, targets)
            return losses.mean(), lib.cross_entropy_backward(logits, targets, lse, dlosses)
        return run

    sides = {"ours": (fwd(K), fwd_bwd(K)), "numpy": (fwd(R), fwd_bwd(R))}
    if torch:
        F = torch.nn.functional
        tlogits, ttargets = torch.from_numpy(logits).requires_grad_(), torch.from_numpy(targets)
        sides["torch"] = (
            no_grad(torch, lambda: F.cross_entropy(tlogits, ttargets)),
            lambda: torch.autograd.grad(F.cross_entropy(tlogits, ttargets), tlogits),
        )
    return sides


def embedding_case(rng, N, C, torch):
    V = VOCAB.get(C, C)
    weight = rng.standard_normal((V, C), dtype=np.float32)
    idx = rng.integers(0, V, N)
    dout = rng.standard_normal((N, C), dtype=np.float32)
    sides = {
        "ours": (lambda: K.embedding_forward(weight, idx),
                 lambda: (K.embedding_forward(weight, idx), K.embedding_backward(dout, idx, V))),
        "numpy": (lambda: R.embedding_forward(weight, idx),
                  lambda: (R.embedding_forward(weight, idx), R.embedding_backward(dout, idx, V))),
    }
    if torch:
        F = torch.nn.functional
        tw, tidx, tdout = torch.from_numpy(weight).requires_grad_(), torch.from_numpy(idx), \
            torch.from_numpy(dout)
        sides["torch"] = (no_grad(torch, lambda: F.embedding(tidx, tw)),
                          lambda: torch.autograd.grad(F.embedding(tidx, tw), tw, tdout))
    return sides


def adamw_case(rng, N, C, torch):
    """One step over N·C parameters (there is no backward: the second column repeats it)."""
    hyper = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}

    def stepper(lib):
        param, grad = rng.standard_normal(N * C, dtype=np.float32), \
            rng.standard_normal(N * C, dtype=np.float32)
        exp_avg, exp_avg_sq, step = np.zeros_like(param), np.zeros_like(param), [0]

        def run():
            step[0] += 1
            lib.adamw_step(param, grad, exp_avg, exp_avg_sq, step[0], **hyper)
        return run

    sides = {"ours": (stepper(K),) * 2, "numpy": (stepper(R),) * 2}
    if torch:
        p = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(N * C, dtype=np.float32)))
        p.grad = torch.from_numpy(rng.standard_normal(N * C, dtype=np.float32))
        try:
            opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
            opt.step()
        except RuntimeError:
            print("torch AdamW: fused=True is unavailable here, using foreach=True")
            opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1,
                                    foreach=True)
        sides["torch"] = (opt.step,) * 2
    return sides


def no_grad(torch, fn):
    def run():
        with torch.no_grad():
            return fn()
    return run


MAKERS = {"gelu": gelu_case, "gelu_exact": partial(gelu_case, approximate="none"),
          "softmax": softmax_case, "layernorm": layernorm_case,
          "cross_entropy": cross_entropy_case, "embedding": embedding_case, "adamw": adamw_case}
KERNELS = {"gelu": gelu, "gelu_exact": gelu, "softmax": softmax, "layernorm": layernorm,
           "cross_entropy": cross_entropy, "embedding": embedding, "adamw": adamw}


def first_calls() -> list[str]:
    """Run every pair once small (serial twins) and once large (parallel kernels), timing the
    compile, or the load from Numba's disk cache, which these first calls include."""
    rng = np.random.default_rng(0)
    lines = []
    for name, maker in MAKERS.items():
        start = time.perf_counter()
        for N, C in ((2, 3), (512, 1025)):  # 512 x 1025 > PARALLEL_MIN_SIZE
            maker(rng, N, C, None)["ours"][-1]()
        seconds = time.perf_counter() - start
        called = [f for f in vars(KERNELS[name]).values() if getattr(f, "signatures", None)]
        loaded = all(d.stats.cache_hits for d in called)
        lines.append(f"{name:>14}: first calls {seconds:6.2f} s "
                     f"({'loaded from cache' if loaded else 'compiled'})")
    return lines




# ----------------------------------------------------------------------------- the public API
def api_softmax(x, dout, ag, F, torch):
    def ours():
        t = ag.from_numpy(x).requires_grad_()
        F.softmax(t, -1).backward(dout)
        return t.grad

    def theirs():
        t = torch.from_numpy(x).requires_grad_()
        torch.softmax(t, -1).backward(torch.from_numpy(dout))
        return t.grad
    return ours, theirs


def api_layer_norm(x, dout, ag, F, torch):
    C = x.shape[-1]
    w, b = np.ones(C, x.dtype), np.zeros(C, x.dtype)

    def ours():
        t, tw, tb = (ag.from_numpy(a).requires_grad_() for a in (x, w, b))
        F.layer_norm(t, (C,), tw, tb).backward(dout)
        return t.grad, tw.grad, tb.grad

    def theirs():
        t, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        torch.nn.functional.layer_norm(t, (C,), tw, tb).backward(torch.from_numpy(dout))
        return t.grad, tw.grad, tb.grad
    return ours, theirs


def api_gelu(x, dout, ag, F, torch):
    def ours():
        t = ag.from_numpy(x).requires_grad_()
        F.gelu(t, approximate="tanh").backward(dout)
        return t.grad

    def theirs():
        t = torch.from_numpy(x).requires_grad_()
        torch.nn.functional.gelu(t, approximate="tanh").backward(torch.from_numpy(dout))
        return t.grad
    return ours, theirs


def api_cross_entropy(x, dout, ag, F, torch):
    targets = np.random.default_rng(1).integers(0, x.shape[1], x.shape[0])

    def ours():
        t = ag.from_numpy(x).requires_grad_()
        F.cross_entropy(t, ag.from_numpy(targets)).backward()
        return t.grad

    def theirs():
        t = torch.from_numpy(x).requires_grad_()
        torch.nn.functional.cross_entropy(t, torch.from_numpy(targets)).backward()
        return t.grad
    return ours, theirs


API_CASES = {"softmax": api_softmax, "layer_norm": api_layer_norm, "gelu": api_gelu,
             "cross_entropy": api_cross_entropy}


def api_table(rounds: int, only: list[str] | None, torch) -> None:
    """Forward + backward of each public function on fresh (8192, 384) tensors, ours and torch's."""
    import alphagrad as ag
    from alphagrad import functional as F

    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((8192, 384), np.float32), rng.standard_normal((8192, 384),
                                                                                np.float32)
    print(f"{'function':>14} {'rows, C':>14} {'ours ms':>9} {'torch ms':>9} {'ours/torch':>11}")
    for name, maker in API_CASES.items():
        if only and name not in only:
            continue
        ours, theirs = maker(x, dout, ag, F, torch)
        ms = medians({"ours": ours, "torch": theirs}, rounds)
        print(f"{name:>14} {'8192, 384':>14} {ms['ours']:9.3f} {ms['torch']:9.3f} "
              f"{ms['torch'] / ms['ours']:10.2f}x", flush=True)


def call_seconds(fn, calls: int) -> list[float]:
    """Each call timed on its own, so one stalled call (a core lent to another process) is an
    outlier the median drops rather than a share of an average."""
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def medians(fns: dict, rounds: int) -> dict[str, float]:
    """Median milliseconds per call of each function, the sides taking turns of ~20 ms."""
    calls = {}
    for side, fn in fns.items():  # warm up, then size each side's turn
        fn()
        calls[side] = max(1, round(ROUND_SECONDS / max(min(call_seconds(fn, 3)), 1e-7)))
    times = {side: [] for side in fns}
    for _ in range(rounds):
        for side, fn in fns.items():
            times[side] += call_seconds(fn, calls[side])
    return {side: 1e3 * statistics.median(t) for side, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=get_num_threads())
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", nargs="*", choices=sorted({*MAKERS, *API_CASES}),
                        help="kernels (or with --api, functions) to run")
    parser.add_argument("--api", action="store_true",
                        help="time F.softmax, F.layer_norm, F.gelu, F.cross_entropy with backward()"
                             " on fresh tensors against torch's (needs torch)")
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's allocator thresholds alone")
    args = parser.parse_args()
    kept = not args.malloc_default and keep_freed_memory()
    set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
        version = f"torch {torch.__version__} (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']})"
    except ImportError:
        torch, version = None, "torch not installed"
    print(f"threads: {get_num_threads()}, float32, {version}, medians of {args.rounds} rounds, "
          f"freed memory {'kept for reuse' if kept else 'returned to the OS (glibc default)'}")
    if args.api:
        if torch is None:
            raise SystemExit("bench_kernels: --api compares against torch, which is not installed")
        print("public API, forward + backward() on fresh tensors; ours/torch > 1: ours faster")
        return api_table(args.rounds, args.only, torch)
    print("\n".join(first_calls()))

    header = f"{'kernel':>14} {'rows, C':>14} {'pass':>8} {'ours ms':>9} {'numpy ms':>9} " \
             f"{'np/ours':>8}"
    if torch:
        header += f" {'torch ms':>9} {'torch/ours':>10}"
    print(header)
    rng = np.random.default_rng(0)
    for name, (N, C) in CASES:
        if args.only and name not in args.only:
            continue
        sides = MAKERS[name](rng, N, C, torch)
        for which, label in enumerate(("fwd", "fwd+bwd") if name != "adamw" else ("step",)):
            ms = medians({side: calls[which] for side, calls in sides.items()}, args.rounds)
            row = (f"{name:>14} {f'{N}, {C}':>14} {label:>8} {ms['ours']:9.3f} "
                   f"{ms['numpy']:9.3f} {ms['numpy'] / ms['ours']:8.2f}")
            if torch:
                row += f" {ms['torch']:9.3f} {ms['torch'] / ms['ours']:10.2f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()

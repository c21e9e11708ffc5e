"""GPT and Llama training and inference speed: alphagrad against the same model in PyTorch
(CPU, eager).

    python benchmarks/bench_gpt.py --threads 2                  # every config, ratio table
    python benchmarks/bench_gpt.py --config tiny --json out.json
    python benchmarks/bench_gpt.py --config char-small --profile
    python benchmarks/bench_gpt.py --config llama-char-medium      # RoPE, RMSNorm, SwiGLU, GQA
    python benchmarks/bench_gpt.py --contention                 # one core kept busy meanwhile

Both models have the same architecture, the same weights (copied from alphagrad's init) and the
same thread count. A training step is forward, loss, backward, gradient clipping at 1.0 and an
AdamW step; forward-only is the loss without a graph. The two sides run interleaved (A B A B)
after a warm-up, and each figure is the median over repeats. MFU counts 6·N FLOPs per token
plus attention, against the peak of a large float32 matrix product measured here at the same
thread count. Peak RSS is measured for each side in a subprocess of its own.

The table names the OpenBLAS kernels NumPy runs: an ``OPENBLAS_CORETYPE`` in the environment
pins them (a machine may set it for old OpenBLAS builds), so to measure this CPU's own kernels
run ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gpt.py``.

The header names the CPU and both libraries' float32 GEMM peaks at the thread count in use
(NumPy's OpenBLAS, which alphagrad's matmuls run on, and torch's): a ratio means the most where the
two are level. Where NumPy's peak is more than 1.2x torch's (OpenBLAS's AVX-512 kernels against
MKL's AVX2 path on AMD CPUs), the comparison runs a second time with ``OPENBLAS_CORETYPE=Haswell``,
which brings NumPy level with torch, and prints both tables.

``--contention`` runs the comparison while a busy-looping process it starts occupies one core:
alphagrad at its default thread setting, alphagrad at 1 thread, and torch at its defaults.

Unless ``--malloc-default`` is given, the process keeps freed memory for reuse (glibc's mmap and
trim thresholds raised with ``mallopt``) from the start, for both sides alike: with glibc's
defaults every large activation is a fresh mmap whose pages fault in zeroed, which costs more
than some kernels. ``--malloc-default`` is a user's plain loop: nothing is set up front, and
alphagrad's first ``backward()`` makes the same choice itself (torch in the same process then
profits too; its peak-RSS process never runs alphagrad's backward and keeps glibc's defaults).
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import io
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

import alphagrad as ag
from alphagrad import nn
from alphagrad.tensor.memory import keep_freed_memory
from alphagrad.train.mfu import peak_flops
from alphagrad.train.run import cpu_model

CONFIGS = {  # name: (vocab, block T, layers, heads, n_embd, batch)
    "tiny": (65, 64, 2, 4, 64, 16),
    "char-small": (65, 128, 4, 4, 128, 32),
    "char-medium": (65, 256, 6, 6, 384, 8),
    "gpt2-124M": (50257, 256, 12, 12, 768, 2),
}
LLAMA_CONFIGS = {  # name: (vocab, block T, layers, heads, KV heads, n_embd, MLP width, batch)
    "llama-char-medium": (65, 256, 6, 6, 2, 384, 1024, 8),
}
MODELS = {nn.GPTConfig: nn.GPT, nn.LlamaConfig: nn.Llama}
LR, BETAS, WEIGHT_DECAY, CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0


def model_config(name: str) -> tuple[nn.GPTConfig | nn.LlamaConfig, int]:
    if name in LLAMA_CONFIGS:
        vocab, T, layers, heads, kv_heads, width, hidden, batch = LLAMA_CONFIGS[name]
        return nn.LlamaConfig(vocab_size=vocab, block_size=T, n_layer=layers, n_head=heads,
                              n_kv_head=kv_heads, n_embd=width, intermediate_size=hidden,
                              tie_embeddings=True), batch
    vocab, T, layers, heads, width, batch = CONFIGS[name]
    return nn.GPTConfig(block_size=T, vocab_size=vocab, n_layer=layers, n_head=heads,
                        n_embd=width, dropout=0.0, bias=True), batch


def make_batch(config: nn.GPTConfig, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    data = rng.integers(0, config.vocab_size, (batch, config.block_size + 1))
    return data[:, :-1].copy(), data[:, 1:].copy()


# ----------------------------------------------------------------------------- the two sides
class AlphagradSide:
    """alphagrad's model; ``threads`` None is the library's default setting."""

    def __init__(self, config: nn.GPTConfig, x: np.ndarray, y: np.ndarray,
                 threads: int | None = None, name: str = "alphagrad"):
        self.name, self.threads = name, threads
        ag.manual_seed(0)
        self.model = MODELS[type(config)](config)
        self.opt = self.model.configure_optimizers(WEIGHT_DECAY, LR, BETAS)
        self.params = list(self.model.parameters())
        self.x, self.y = x, y

    def activate(self) -> None:
        ag.set_num_threads(self.threads)

    def train_step(self) -> float:
        _, loss = self.model(self.x, self.y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, CLIP)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()

    def forward(self) -> float:
        with ag.no_grad():
            return self.model(self.x, self.y)[1].item()


def torch_model(config: nn.GPTConfig):
    """nanoGPT's model in PyTorch, with the GELU form ``config`` names (as alphagrad's)."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    class Attention(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = tnn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
            self.c_proj = tnn.Linear(config.n_embd, config.n_embd, bias=config.bias)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, config.n_head, C // config.n_head).transpose(1, 2)
                       for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = tnn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
            self.gelu = tnn.GELU(approximate=config.gelu_approximate)
            self.c_proj = tnn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = tnn.LayerNorm(config.n_embd, bias=config.bias)
            self.attn = Attention()
            self.ln_2 = tnn.LayerNorm(config.n_embd, bias=config.bias)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(tnn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = tnn.ModuleDict({
                "wte": tnn.Embedding(config.vocab_size, config.n_embd),
                "wpe": tnn.Embedding(config.block_size, config.n_embd),
                "h": tnn.ModuleList(Block() for _ in range(config.n_layer)),
                "ln_f": tnn.LayerNorm(config.n_embd, bias=config.bias),
            })
            self.lm_head = tnn.Linear(config.n_embd, config.vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight

        def forward(self, idx, targets):
            idx, targets = torch.as_tensor(idx), torch.as_tensor(targets)  # (B, T), ndarrays too
            pos = torch.arange(idx.shape[1])
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = TF.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                    ignore_index=-1)
            return logits, loss

    return GPT()


def torch_llama(config: nn.LlamaConfig):
    """alphagrad's Llama in PyTorch: Hugging Face's names and rotary layout, torch's fused SDPA
    with grouped-query attention, RMSNorm and SiLU."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as TF

    from alphagrad.nn.llama import rope_inv_freq

    NH, NKV, C = config.n_head, config.n_kv_head, config.n_embd
    hs = C // NH
    inv_freq = torch.from_numpy(rope_inv_freq(config))

    def rotate(x, cos, sin):  # (B, heads, T, hs), HF's rotate_half form
        x1, x2 = x[..., :hs // 2], x[..., hs // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    class Attention(tnn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = tnn.Linear(C, NH * hs, bias=False)
            self.k_proj = tnn.Linear(C, NKV * hs, bias=False)
            self.v_proj = tnn.Linear(C, NKV * hs, bias=False)
            self.o_proj = tnn.Linear(NH * hs, C, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            q = rotate(self.q_proj(x).view(B, T, NH, hs).transpose(1, 2), cos, sin)
            k = rotate(self.k_proj(x).view(B, T, NKV, hs).transpose(1, 2), cos, sin)
            v = self.v_proj(x).view(B, T, NKV, hs).transpose(1, 2)
            y = TF.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, C))

    class MLP(tnn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = tnn.Linear(C, config.intermediate_size, bias=False)
            self.up_proj = tnn.Linear(C, config.intermediate_size, bias=False)
            self.down_proj = tnn.Linear(config.intermediate_size, C, bias=False)

        def forward(self, x):
            return self.down_proj(TF.silu(self.gate_proj(x)) * self.up_proj(x))

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = tnn.RMSNorm(C, eps=config.norm_eps)
            self.self_attn = Attention()
            self.post_attention_layernorm = tnn.RMSNorm(C, eps=config.norm_eps)
            self.mlp = MLP()

        def forward(self, x, cos, sin):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Llama(tnn.Module):
        def __init__(self):
            super().__init__()
            self.model = tnn.ModuleDict({
                "embed_tokens": tnn.Embedding(config.vocab_size, C),
                "layers": tnn.ModuleList(Block() for _ in range(config.n_layer)),
                "norm": tnn.RMSNorm(C, eps=config.norm_eps),
            })
            self.lm_head = tnn.Linear(C, config.vocab_size, bias=False)
            if config.tie_embeddings:
                self.model.embed_tokens.weight = self.lm_head.weight

        def forward(self, idx, targets):
            idx, targets = torch.as_tensor(idx), torch.as_tensor(targets)
            angles = torch.outer(torch.arange(idx.shape[1], dtype=torch.float64), inv_freq)
            cos, sin = (torch.cat((f(angles),) * 2, dim=-1).float() for f in (torch.cos, torch.sin))
            x = self.model.embed_tokens(idx)
            for block in self.model.layers:
                x = block(x, cos, sin)
            logits = self.lm_head(self.model.norm(x))
            loss = TF.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                    ignore_index=-1)
            return logits, loss

    return Llama()


class TorchSide:
    name = "torch"

    def __init__(self, config: nn.GPTConfig, x: np.ndarray, y: np.ndarray):
        import torch

        self.torch = torch
        ag.manual_seed(0)
        weights = MODELS[type(config)](config).state_dict()  # alphagrad's init, copied across
        self.model = (torch_llama if isinstance(config, nn.LlamaConfig) else torch_model)(config)
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
        params = list(self.model.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS)
        self.params = params
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)

    def activate(self) -> None:
        pass  # torch's thread count is its own, set once

    def train_step(self) -> float:
        _, loss = self.model(self.x, self.y)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()

    def forward(self) -> float:
        with self.torch.no_grad():
            return self.model(self.x, self.y)[1].item()




def blas_core() -> str:
    """OpenBLAS's kernel family in use (Haswell, SkylakeX, ...), read from the loaded library."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename"):
            getter = getattr(lib, name, None)
            if getter is not None:
                getter.restype = ctypes.c_char_p
                return getter().decode()
    return "unknown"


def torch_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Float32 FLOP/s of torch's best n x n GEMM at its current thread count (as ``peak_flops``)."""
    import torch

    a = torch.ones((n, n))
    out = torch.empty_like(a)
    torch.mm(a, a, out=out)
    best = min(_timed(lambda: torch.mm(a, a, out=out)) for _ in range(repeats))
    return 2 * n**3 / best


def cpu_name() -> str:
    """The CPU model with its family and model numbers (two chips can share a marketing name)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    ids = f", family {fields['cpu family']} model {fields['model']}" if "model" in fields else ""
    return f"{cpu_model()}{ids}, {os.cpu_count()} cores"


def set_threads(n: int, with_torch: bool) -> None:
    ag.set_num_threads(n)
    if with_torch:
        import torch

        torch.set_num_threads(n)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- measurement
def _timed(fn, count: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count


# Seconds of pause before each timed block. OpenBLAS's threads (NumPy's) spin for about 2^28
# cycles after a product returns, and OpenMP's (torch's) for a while too: without the pause,
# each side's first steps run beside the other library's spinning threads (measured on tiny at 2
# threads: torch 37k tokens/s right after alphagrad's steps, 66-68k after a pause).
SETTLE = 0.3
# Seconds a timed block lasts at least. The first step after the pause wakes sleeping thread
# pools and refills caches, which a training run pays once, not every few steps (measured on tiny
# at 2 threads, three runs each: ours 73-77k tokens/s in blocks of 5 steps, 82-87k in blocks
# of at least 0.5 s; torch 62-64k and 69-77k).
MIN_BLOCK = 0.5


def interleaved(sides: list, method: str, repeats: int, count: int) -> dict[str, float]:
    """Median seconds per call of ``method`` on each side, sides alternating (A B A B), each
    block of at least ``count`` calls and ``MIN_BLOCK`` seconds after a pause of ``SETTLE``
    seconds; both sides make the same number of calls."""
    fastest = math.inf
    for side in sides:  # warm-up: compilation, allocator, caches
        side.activate()
        getattr(side, method)()
        fastest = min(fastest, _timed(getattr(side, method)))
    count = max(count, math.ceil(MIN_BLOCK / fastest))
    times = {side.name: [] for side in sides}
    for _ in range(repeats):
        for side in sides:
            side.activate()
            time.sleep(SETTLE)
            times[side.name].append(_timed(getattr(side, method), count))
    return {name: statistics.median(ts) for name, ts in times.items()}


def peak_rss_mb(side: str, config_name: str, threads: int, malloc_default: bool) -> float:
    """Peak resident memory of a fresh process doing three training steps on one side."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-worker", side, "--config", config_name,
         "--threads", str(threads)] + (["--malloc-default"] if malloc_default else []),
        capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def rss_worker(side: str, config_name: str, threads: int, malloc_default: bool) -> None:
    if not malloc_default:
        keep_freed_memory()
    set_threads(threads, side == "torch")
    config, batch = model_config(config_name)
    x, y = make_batch(config, batch)
    runner = (TorchSide if side == "torch" else AlphagradSide)(config, x, y)
    for _ in range(3):
        runner.train_step()
    print(vm_hwm_mb())


def vm_hwm_mb() -> float:
    """This process's peak RSS. Not getrusage: its maximum carries over from the forking parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_config(name: str, threads: int, peak: float, with_torch: bool,
                 malloc_default: bool) -> dict:
    config, batch = model_config(name)
    x, y = make_batch(config, batch)
    sides = [AlphagradSide(config, x, y, threads)]
    sides += [TorchSide(config, x, y)] if with_torch else []
    tokens = batch * config.block_size
    small = tokens * config.n_embd * config.n_layer < 10_000_000
    repeats, count = (7, 5) if small else (5, 1)
    train = interleaved(sides, "train_step", repeats, count)
    forward = interleaved(sides, "forward", repeats, count)
    flops = sides[0].model.flops_per_token(config.block_size) * tokens
    result = {"config": name, "threads": threads, "tokens_per_step": tokens}
    for side in sides:
        result[side.name] = {
            "train_tokens_per_s": tokens / train[side.name],
            "forward_tokens_per_s": tokens / forward[side.name],
            "train_mfu": flops / train[side.name] / peak,
            "peak_rss_mb": peak_rss_mb(side.name, name, threads, malloc_default),
        }
    if with_torch:
        a, t = result["alphagrad"], result["torch"]
        result["train_ratio"] = a["train_tokens_per_s"] / t["train_tokens_per_s"]
        result["forward_ratio"] = a["forward_tokens_per_s"] / t["forward_tokens_per_s"]
    return result


def contention_config(name: str, peak: float, with_torch: bool) -> dict:
    """alphagrad at its default threads and at 1 thread, torch at its defaults, interleaved."""
    config, batch = model_config(name)
    x, y = make_batch(config, batch)
    sides = [AlphagradSide(config, x, y, None, "default"),
             AlphagradSide(config, x, y, 1, "1-thread")]
    sides += [TorchSide(config, x, y)] if with_torch else []
    tokens = batch * config.block_size
    small = tokens * config.n_embd * config.n_layer < 10_000_000
    train = interleaved(sides, "train_step", *((7, 5) if small else (5, 1)))
    result = {"config": name, "tokens_per_step": tokens, "threads_chosen": ag.get_num_threads()}
    result.update({side: tokens / seconds for side, seconds in train.items()})
    return result


def print_header(threads: int | None, peak: float, torch_peak: float | None,
                 malloc_default: bool) -> None:
    print(f"\nCPU {cpu_name()}; threads "
          + (str(threads) if threads else "at each library's default") + "; freed memory "
          + ("as a plain loop leaves it" if malloc_default else "kept for reuse"))
    gemm = f"float32 GEMM peak (2048^3): NumPy (OpenBLAS {blas_core()} kernels) " \
           f"{peak / 1e9:.1f} GFLOP/s"
    if torch_peak:
        gemm += f", torch {torch_peak / 1e9:.1f} GFLOP/s, NumPy/torch {peak / torch_peak:.2f}"
    print(gemm + "; MFU is against NumPy's peak")


def print_contention(results: list[dict], with_torch: bool) -> None:
    print("one other process busy-looping on one core; train tokens/s, medians")
    head = f"{'config':<12} {'default':>9} {'1-thread':>9} {'threads':>8} {'default/1':>10}"
    print(head + (f" {'torch':>9} {'default/torch':>14}" if with_torch else ""))
    for r in results:
        line = f"{r['config']:<12} {r['default']:>9,.0f} {r['1-thread']:>9,.0f} " \
               f"{r['threads_chosen']:>8} {r['default'] / r['1-thread']:>9.2f}x"
        if with_torch:
            line += f" {r['torch']:>9,.0f} {r['default'] / r['torch']:>13.2f}x"
        print(line)


def print_table(results: list[dict], with_torch: bool) -> None:
    if not with_torch:
        print("(torch not installed: alphagrad only)")
    head = f"{'config':<12} {'side':<10} {'train tok/s':>12} {'fwd tok/s':>12} {'MFU':>6} " \
           f"{'RSS MB':>8}"
    print(head + (f" {'train x':>8} {'fwd x':>7}" if with_torch else ""))
    for r in results:
        for side in ("alphagrad", "torch") if with_torch else ("alphagrad",):
            s = r[side]
            line = f"{r['config']:<12} {side:<10} {s['train_tokens_per_s']:>12,.0f} " \
                   f"{s['forward_tokens_per_s']:>12,.0f} {s['train_mfu']:>6.1%} " \
                   f"{s['peak_rss_mb']:>8.0f}"
            if with_torch and side == "alphagrad":
                line += f" {r['train_ratio']:>7.2f}x {r['forward_ratio']:>6.2f}x"
            print(line)


def profile(name: str, steps: int = 10, top: int = 25) -> None:
    config, batch = model_config(name)
    side = AlphagradSide(config, *make_batch(config, batch))
    side.train_step()
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [side.train_step() for _ in range(steps)])
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    print(f"cProfile of {steps} alphagrad training steps, config {name}:\n{text.getvalue()}")


def busy_core() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", choices=[*CONFIGS, *LLAMA_CONFIGS, "all"], default="all")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--profile", action="store_true", help="cProfile alphagrad's step instead")
    parser.add_argument("--no-torch", action="store_true", help="measure alphagrad alone")
    parser.add_argument("--malloc-default", action="store_true",
                        help="set nothing up front, as a user's plain training loop")
    parser.add_argument("--contention", action="store_true",
                        help="keep one core busy with another process during the comparison")
    parser.add_argument("--rss-worker", choices=["alphagrad", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker:
        return rss_worker(args.rss_worker, args.config, args.threads, args.malloc_default)
    if not args.malloc_default:
        keep_freed_memory()
    with_torch = not args.no_torch and torch_available()
    names = [*CONFIGS, *LLAMA_CONFIGS] if args.config == "all" else [args.config]
    if args.profile:
        set_threads(args.threads, with_torch)
        for name in names:
            profile(name)
        return
    if not args.contention:
        set_threads(args.threads, with_torch)
    peak = peak_flops(ag.get_num_threads(), n=2048, repeats=5)
    torch_peak = torch_peak_flops() if with_torch else None
    busy = busy_core() if args.contention else None
    try:
        results = []
        for name in names:
            results.append(contention_config(name, peak, with_torch) if args.contention else
                           bench_config(name, args.threads, peak, with_torch, args.malloc_default))
            print(f"{name}: done", file=sys.stderr, flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print_header(None if args.contention else args.threads, peak, torch_peak, args.malloc_default)
    (print_contention if args.contention else print_table)(results, with_torch)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "peak_flops": peak, "torch_peak_flops": torch_peak,
                       "threads": args.threads, "contention": args.contention,
                       "results": results}, f, indent=2)
    if torch_peak and peak > 1.2 * torch_peak and "OPENBLAS_CORETYPE" not in os.environ:
        print("\nNumPy's GEMM peak is > 1.2x torch's: again with OPENBLAS_CORETYPE=Haswell",
              flush=True)
        subprocess.run([sys.executable, __file__, *sys.argv[1:]], check=True,
                       env={**os.environ, "OPENBLAS_CORETYPE": "Haswell"})


if __name__ == "__main__":
    main()

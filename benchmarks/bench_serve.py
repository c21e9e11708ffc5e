"""Serving speed: the batching engine's decode rate, time to first token and aggregate
throughput, against Hugging Face ``transformers``' ``generate`` on the same weights.

    python benchmarks/bench_serve.py --threads 2                       # both shapes
    python benchmarks/bench_serve.py --config char-medium --streams 1 4 8 16

For each shape (``bench_gpt``'s char-medium and gpt2-124M, seeded random weights; greedy
decoding, no end-of-text token, so every stream runs to its length):

- single stream: decode tokens/s (tokens after the first, over the time after the first) and
  time to first token (TTFT) for a 200-token prompt, on an idle engine; beside them the same
  for ``transformers``' ``GPT2LMHeadModel.generate`` with its KV cache, loaded from the folder
  ``alphagrad export --format hf`` writes, at the same thread count (when installed);
- TTFT of a 200-token prompt that arrives while 8 streams are decoding, as a ratio to idle;
- aggregate tokens/s of N concurrent streams (short prompts, all submitted at once), and its
  ratio to one stream.

The engine is driven directly (``Engine.step``): the server runs exactly this loop in its
thread, and HTTP adds a constant per token that does not depend on the model. Each figure is the
median of ``--repeats`` runs after a warm-up; alphagrad and transformers runs interleave.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_gpt import CONFIGS, blas_core, model_config, set_threads, torch_available

import alphagrad as ag
from alphagrad import nn
from alphagrad.serve.engine import Engine, SamplingParams
from alphagrad.train.mfu import peak_flops
from alphagrad.train.run import cpu_model

PROMPT_TOKENS = 200


def make_model(name: str, block_size: int) -> nn.GPT:
    config, _ = model_config(name)
    config.block_size = block_size
    ag.manual_seed(0)
    return nn.GPT(config).eval()


def prompt(vocab: int, length: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, vocab, length).tolist()


def timed_request(engine: Engine, ids: list[int], new_tokens: int) -> tuple[float, float]:
    """(seconds to the first token, decode tokens/s after it) of one request stepped alone."""
    times: list[float] = []
    request = engine.submit(ids, SamplingParams(max_tokens=new_tokens, temperature=0),
                            lambda event: times.append(time.perf_counter()))
    started = time.perf_counter()
    while engine.step():
        pass
    assert len(request.tokens) == new_tokens
    return times[0] - started, (new_tokens - 1) / (times[new_tokens - 1] - times[0])


def ttft_under_load(engine: Engine, vocab: int, busy: int, new_tokens: int) -> float:
    """Seconds to the first token of a 200-token prompt submitted while ``busy`` streams decode."""
    for i in range(busy):
        engine.submit(prompt(vocab, 8, seed=i + 1),
                      SamplingParams(max_tokens=new_tokens + 64, temperature=0))
    for _ in range(3):  # every stream is decoding
        engine.step()
    first: list[float] = []
    engine.submit(prompt(vocab, PROMPT_TOKENS), SamplingParams(max_tokens=1, temperature=0),
                  lambda event: first or first.append(time.perf_counter()))
    started = time.perf_counter()
    while not first:
        engine.step()
    elapsed = first[0] - started
    while engine.step():
        pass
    return elapsed


def aggregate(engine: Engine, vocab: int, streams: int, new_tokens: int) -> float:
    """Tokens/s of ``streams`` requests submitted at once, each generating ``new_tokens``."""
    requests = [engine.submit(prompt(vocab, 8, seed=i), SamplingParams(max_tokens=new_tokens,
                                                                        temperature=0))
                for i in range(streams)]
    started = time.perf_counter()
    while engine.step():
        pass
    assert all(len(r.tokens) == new_tokens for r in requests)
    return streams * new_tokens / (time.perf_counter() - started)


class HFSide:
    """``transformers``' GPT-2 from the folder ``alphagrad export --format hf`` writes."""

    def __init__(self, model: nn.GPT, folder: Path):
        import torch
        import transformers
        from transformers import GPT2LMHeadModel

        from alphagrad.cli import main
        from alphagrad.train.checkpoint import save_checkpoint

        checkpoint = folder / "model.ckpt"
        save_checkpoint(checkpoint, model_kind="gpt", model_config=model.config.__dict__,
                        model_state=model.state_dict(), tied=model.tied_weights())
        with contextlib.redirect_stdout(io.StringIO()):
            main(["export", str(checkpoint), "--format", "hf", "-o", str(folder / "hf")],
                 standalone_mode=False)
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(folder / "hf").eval()

    def generate(self, ids: list[int], new_tokens: int) -> float:
        x = self.torch.tensor([ids])
        started = time.perf_counter()
        with self.torch.inference_mode():
            out = self.model.generate(x, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      do_sample=False, use_cache=True, pad_token_id=0)
        assert out.shape[1] == len(ids) + new_tokens
        return time.perf_counter() - started

    def timed_request(self, ids: list[int], new_tokens: int) -> tuple[float, float]:
        ttft = self.generate(ids, 1)
        return ttft, (new_tokens - 1) / (self.generate(ids, new_tokens) - ttft)


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def bench(name: str, threads: int, streams: list[int], new_tokens: int, repeats: int,
          with_hf: bool) -> dict:
    block = 1024 if name == "gpt2-124M" else CONFIGS[name][1]
    model = make_model(name, block)
    vocab = model.config.vocab_size
    engine = Engine(model, slots=max(max(streams), 9))
    hf = None
    if with_hf:
        folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        hf = HFSide(model, folder)
    long_prompt = prompt(vocab, PROMPT_TOKENS)
    short = prompt(vocab, 8)
    for ids in (short, long_prompt):  # warm-up: every kernel compiled, every path run once
        timed_request(engine, ids, 8)
        if hf:
            hf.timed_request(ids, 8)
    ours_idle, theirs_idle, ours_decode, theirs_decode = [], [], [], []
    for _ in range(repeats):  # interleaved
        ours_idle.append(timed_request(engine, long_prompt, 2))
        ours_decode.append(timed_request(engine, short, new_tokens))
        if hf:
            theirs_idle.append(hf.timed_request(long_prompt, 2))
            theirs_decode.append(hf.timed_request(short, new_tokens))
    result = {"name": name, "ttft": median_pair(ours_idle)[0],
              "decode": median_pair(ours_decode)[1]}
    if hf:
        result |= {"hf_ttft": median_pair(theirs_idle)[0],
                   "hf_decode": median_pair(theirs_decode)[1]}
    result["ttft_loaded"] = statistics.median(ttft_under_load(engine, vocab, 8, new_tokens)
                                              for _ in range(repeats))
    result["aggregate"] = {n: statistics.median(aggregate(engine, vocab, n, new_tokens)
                                                for _ in range(repeats)) for n in streams}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=["char-medium", "gpt2-124M"], nargs="*",
                        default=["char-medium", "gpt2-124M"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, nargs="*", default=[1, 4, 8, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-hf", action="store_true", help="skip transformers")
    args = parser.parse_args()
    with_hf = not args.no_hf and torch_available()
    if with_hf:
        try:
            import transformers  # noqa: F401
        except ImportError:
            with_hf = False
    set_threads(args.threads, with_hf)
    peak = peak_flops(args.threads)
    print(f"CPU: {cpu_model()}; {args.threads} threads; OpenBLAS {blas_core()}, "
          f"sgemm peak {peak / 1e9:.0f} GFLOP/s (NumPy)")
    print(f"greedy decoding of {args.new_tokens} new tokens; TTFT for a {PROMPT_TOKENS}-token "
          f"prompt; medians of {args.repeats}\n")
    results = [bench(name, args.threads, args.streams, args.new_tokens, args.repeats, with_hf)
               for name in args.config]
    print("| shape | decode tok/s | HF generate tok/s | ratio | TTFT idle | HF TTFT "
          "| TTFT with 8 streams | ratio to idle |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        hf = (f"{r['hf_decode']:.1f} | {r['decode'] / r['hf_decode']:.2f}x" if "hf_decode" in r
              else "- | -")
        hf_ttft = f"{r['hf_ttft'] * 1e3:.0f} ms" if "hf_ttft" in r else "-"
        print(f"| {r['name']} | {r['decode']:.1f} | {hf} | {r['ttft'] * 1e3:.0f} ms | {hf_ttft} "
              f"| {r['ttft_loaded'] * 1e3:.0f} ms | {r['ttft_loaded'] / r['ttft']:.2f}x |")
    print("\n| shape | " + " | ".join(f"{n} streams tok/s" for n in args.streams)
          + " | " + " | ".join(f"{n} vs 1" for n in args.streams if n != 1) + " |")
    print("|---|" + "---|" * (2 * len(args.streams) - (1 in args.streams)))
    for r in results:
        agg = r["aggregate"]
        one = agg.get(1)
        ratios = [f"{agg[n] / one:.2f}x" if one else "-" for n in args.streams if n != 1]
        print(f"| {r['name']} | " + " | ".join(f"{agg[n]:.1f}" for n in args.streams) + " | "
              + " | ".join(ratios) + " |")


if __name__ == "__main__":
    main()

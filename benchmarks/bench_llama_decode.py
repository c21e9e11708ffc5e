"""Llama decoding speed: alphagrad's generate (KV cache) against transformers' generate on the
same weights, a 135M-parameter Llama of SmolLM-135M's shape (30 layers x 576, 9 heads, 3 KV
heads, vocabulary 49152), random weights, greedy, at the same thread count.

    python benchmarks/bench_llama_decode.py --threads 2 --prompt 32 --new 64

Both sides start from one prompt of ``--prompt`` tokens and add ``--new`` tokens; tokens/s
counts the new tokens over the whole call (prompt included, as a user waits for it). The two
run interleaved after a warm-up; figures are medians over ``--repeats``. The generated tokens
are compared: both sides must produce the same greedy continuation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

import alphagrad as ag
from alphagrad.nn import Llama, LlamaConfig

SMOLLM_135M = {"vocab_size": 49152, "block_size": 2048, "n_layer": 30, "n_head": 9,
               "n_kv_head": 3, "n_embd": 576, "intermediate_size": 1536, "tie_embeddings": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    import transformers

    ag.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    ag.manual_seed(0)
    ours = Llama(LlamaConfig(**SMOLLM_135M))
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        theirs = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    prompt = np.random.default_rng(0).integers(0, SMOLLM_135M["vocab_size"], (1, args.prompt))

    def run_ours():
        return ours.generate(prompt, args.new, temperature=0).data[0, args.prompt:]

    def run_theirs():
        with torch.no_grad():
            out = theirs.generate(torch.from_numpy(prompt), max_new_tokens=args.new,
                                  min_new_tokens=args.new, do_sample=False, pad_token_id=0)
        return out[0, args.prompt:].numpy()

    same = np.array_equal(run_ours(), run_theirs())  # also the warm-up
    times = {"alphagrad": [], "transformers": []}
    for _ in range(args.repeats):
        for name, fn in (("alphagrad", run_ours), ("transformers", run_theirs)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    print(f"Llama {ours.num_parameters() / 1e6:.0f}M (SmolLM-135M shape), {args.threads} threads, "
          f"prompt {args.prompt}, {args.new} new tokens, greedy; same tokens: {same}")
    rates = {name: args.new / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"{name:<13} {rate:8.1f} tok/s  (median of {args.repeats})")
    print(f"ratio         {rates['alphagrad'] / rates['transformers']:8.2f}x")


if __name__ == "__main__":
    main()

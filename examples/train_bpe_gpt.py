"""Byte-level BPE end to end: train a tokenizer, prepare token files, train a small GPT, sample.

    python examples/train_bpe_gpt.py                         # on ~4 MB of Python's own stdlib
    python examples/train_bpe_gpt.py --data a.txt b.txt --vocab-size 4096 --set max_iters=1000

Without ``--data`` the corpus is the running interpreter's standard-library source (every Python
installation has it), one document per file. The tokenizer uses GPT-4's split pattern; the model
is 4 layers x 128 wide over 128 tokens of context, trained for a few hundred steps: enough to
see the loss fall and the samples turn into Python-looking text, not a finished model. Losses
are also given in bits per byte, the figure that compares across tokenizers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from train_shakespeare_char import print_report, train_and_report

from alphagrad.tokenizers import BPETokenizer
from alphagrad.train import TrainConfig, prepare
from alphagrad.train.corpus import stdlib_files

CONFIG = TrainConfig(
    n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0,
    batch_size=16, max_iters=300, learning_rate=2e-3, min_lr=2e-4, warmup_iters=30,
    eval_interval=100, eval_iters=10,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, metavar="FILE",
                        help="text files, one document each (default: standard-library source)")
    parser.add_argument("--corpus-mb", type=float, default=4.0,
                        help="how much standard-library source to use without --data")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--data-dir", default="data/bpe_gpt", help="where the token files go")
    parser.add_argument("--runs", default="runs", help="folder that holds the run folders")
    parser.add_argument("--threads", type=int, help="threads for kernels and BLAS (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainConfig field, e.g. --set max_iters=1000")
    parser.add_argument("--final-eval-iters", type=int, default=50)
    parser.add_argument("--prompt", default="def ")
    parser.add_argument("--sample-tokens", type=int, default=150)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    files = args.data or stdlib_files(max_bytes=int(args.corpus_mb * 2**20))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(missing)}")
    started = time.perf_counter()
    tokenizer = BPETokenizer.train(files, vocab_size=args.vocab_size, num_threads=args.threads)
    print(f"BPE tokenizer: {tokenizer.vocab_size} ids learnt from {len(files)} files in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    stats = prepare(files, tokenizer, args.data_dir)
    print(f"prepared: {stats['train_tokens']:,} train / {stats['val_tokens']:,} val tokens, "
          f"{stats['train_bytes'] / stats['train_tokens']:.2f} bytes per token", flush=True)

    config = CONFIG.with_overrides(args.set).replace(data_dir=str(args.data_dir),
                                                     num_threads=args.threads)
    result = train_and_report(config, args.runs, args.final_eval_iters, prompt=args.prompt,
                              sample_tokens=args.sample_tokens)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result | {"vocab_size": tokenizer.vocab_size},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()

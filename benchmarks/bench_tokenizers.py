"""BPE tokenizer benchmark: alphagrad against Hugging Face tokenizers and tiktoken.

For each corpus (tinyshakespeare and ~32 MB of the standard library's own .py sources) and each
vocabulary size, with the gpt2 split pattern:
  - training seconds, alphagrad (num_threads) vs Hugging Face (ByteLevel + BpeTrainer fed the
    documents through train_from_iterator); Numba compile time is measured once, apart;
  - encode MB/s at 1 and 2 threads vs tiktoken (built offline from alphagrad's ranks) and Hugging
    Face (loaded from alphagrad's exported tokenizer.json), after checking all three agree;
  - bytes per token on held-out text (the last 10% of the documents) vs Hugging Face's own
    vocabulary of the same size.
Sides are interleaved (A B A B) and medians reported. Run: python benchmarks/bench_tokenizers.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

from alphagrad.tokenizers import BPETokenizer

ROOT = Path(__file__).resolve().parents[1]


def stdlib_corpus(limit_bytes: int) -> list[str]:
    """The standard library's .py files in sorted path order, up to ``limit_bytes``."""
    docs, size = [], 0
    for folder, subfolders, files in os.walk(sysconfig.get_paths()["stdlib"]):
        subfolders[:] = sorted(d for d in subfolders if d not in ("site-packages", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py") and size < limit_bytes:
                text = Path(folder, name).read_text(encoding="utf-8", errors="replace")
                docs.append(text)
                size += len(text.encode("utf-8", "surrogatepass"))
    return docs


def shakespeare(path: Path) -> list[str]:
    # Paragraph-sized documents, so the held-out split is a real slice of the text.
    return [p + "\n\n" for p in path.read_text(encoding="utf-8").split("\n\n")]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def interleaved(sides: dict, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(timed(fn)[0])
    return {name: statistics.median(t) for name, t in times.items()}


def hf_train(docs, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def bench(name, docs, vocab_size, threads, repeats) -> str:
    """One table row."""
    import tiktoken
    from tokenizers import Tokenizer

    split = len(docs) * 9 // 10
    train_docs, held_out = docs[:split], "".join(docs[split:])
    mb = sum(len(d.encode("utf-8", "surrogatepass")) for d in docs) / 1e6
    ours = BPETokenizer.train(train_docs, vocab_size, pattern="gpt2", num_threads=threads)
    hf_own = hf_train(train_docs, vocab_size)
    train = interleaved({
        "alphagrad": lambda: BPETokenizer.train(train_docs, vocab_size, "gpt2",
                                                num_threads=threads),
        "huggingface": lambda: hf_train(train_docs, vocab_size)}, repeats)

    enc = tiktoken.Encoding(f"bench{vocab_size}", pat_str=ours.pattern,
                            mergeable_ranks=ours.mergeable_ranks(), special_tokens={})
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_huggingface(Path(tmp, "tokenizer.json"))
        hf = Tokenizer.from_file(str(Path(tmp, "tokenizer.json")))
    same = all(ours.encode(d) == enc.encode_ordinary(d) == hf.encode(d).ids for d in docs)
    encode = interleaved({
        "alphagrad 1": lambda: [ours.encode(d) for d in docs],
        "tiktoken 1": lambda: [enc.encode_ordinary(d) for d in docs],
        "huggingface 1": lambda: [hf.encode(d) for d in docs],
        "alphagrad 2": lambda: ours.encode_batch(docs, num_threads=2),
        "tiktoken 2": lambda: enc.encode_ordinary_batch(docs, num_threads=2),
        "huggingface 2": lambda: hf.encode_batch(docs)}, repeats)
    raw = len(held_out.encode("utf-8", "surrogatepass"))
    ours_bpt = raw / len(ours.encode(held_out))
    hf_bpt = raw / len(hf_own.encode(held_out).ids)

    ours_s, hf_s = train["alphagrad"], train["huggingface"]
    mbs = {k: mb / v for k, v in encode.items()}
    return (f"| {name} ({mb:.1f} MB) | {vocab_size} | {threads} | {ours_s:.2f} | {hf_s:.2f} "
            f"| {hf_s / ours_s:.2f}x | {mbs['alphagrad 1']:.1f} / {mbs['alphagrad 2']:.1f} "
            f"| {mbs['tiktoken 1']:.1f} / {mbs['tiktoken 2']:.1f} "
            f"| {mbs['huggingface 1']:.1f} / {mbs['huggingface 2']:.1f} "
            f"| {mbs['alphagrad 1'] / mbs['tiktoken 1']:.2f}x "
            f"| {mbs['alphagrad 2'] / mbs['tiktoken 1']:.2f}x | {same} "
            f"| {ours_bpt:.3f} / {hf_bpt:.3f} ({100 * (ours_bpt / hf_bpt - 1):+.2f}%) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shakespeare", type=Path,
                        default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")
    parser.add_argument("--stdlib-mb", type=float, default=32.0)
    parser.add_argument("--vocab", type=int, nargs="+", default=[4096, 32768])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    compile_s, _ = timed(BPETokenizer.train, ["warm up the kernels: 123 abc\n"] * 3, 300, "gpt2")
    compile_s += timed(BPETokenizer([], "gpt2").encode, "warm up")[0]
    corpora = [("stdlib", stdlib_corpus(int(args.stdlib_mb * 1e6)))]
    if args.shakespeare.exists():
        corpora.insert(0, ("tinyshakespeare", shakespeare(args.shakespeare)))
    print(f"Numba compile + first call (cold cache only): {compile_s:.1f} s; "
          f"median of {args.repeats}, sides interleaved\n")
    print("| corpus | vocab | train thr | train s ours | train s HF | HF/ours "
          "| enc MB/s ours 1t / 2t | tiktoken 1t / 2t | HF 1t / all | ours/tiktoken 1t | "
          "ours 2t / tiktoken 1t | same ids | bytes/token ours / HF |")
    print("|---" * 13 + "|", flush=True)
    for name, docs in corpora:
        for vocab_size in args.vocab:
            print(bench(name, docs, vocab_size, args.threads, args.repeats), flush=True)


if __name__ == "__main__":
    main()

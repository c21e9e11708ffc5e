"""``alphagrad tokenizer train|encode|stats``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import click

from alphagrad.cli.display import table
from alphagrad.cli.errors import UserError
from alphagrad.cli.options import progress_bars, threads_option
from alphagrad.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    SentencePieceBPE,
    Tokenizer,
    WordTokenizer,
    load,
)
from alphagrad.train.progress import count

KINDS = {"bpe": BPETokenizer, "char": CharTokenizer, "word": WordTokenizer}
existing = click.Path(exists=True, path_type=Path)
tokenizer_file = click.Path(exists=True, dir_okay=False, path_type=Path)


def corpus_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, a folder standing for its non-hidden files (sorted, recursively)."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(path).parts))
        else:
            files.append(path)
    if not files:
        raise ValueError(f"no files in {', '.join(map(str, paths))}")
    return files


def read_text(files: list[Path]) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


@click.group()
def tokenizer() -> None:
    """Train tokenizers, encode text with them, measure them on a corpus."""


@tokenizer.command("train")
@click.argument("corpus", nargs=-1, required=True, type=existing)
@click.option("--kind", type=click.Choice(sorted(KINDS)), default="bpe", show_default=True,
              help="Byte-level BPE, one token per character, or one per word.")
@click.option("--vocab-size", type=click.IntRange(min=1),
              help="Ids in the vocabulary (BPE: required, at least 256; char and word: the most "
                   "frequent units kept, <unk> included; default every unit seen).")
@click.option("--pattern", help="BPE split pattern: gpt2, gpt4 (the default) or a regex.")
@click.option("--special", multiple=True, metavar="TOKEN",
              help="A BPE special token, e.g. '<|endoftext|>' (repeatable).")
@click.option("--min-frequency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Merge or keep only what occurs at least this often.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Tokenizer file to write (JSON).")
@threads_option
def train_tokenizer(corpus: tuple[Path, ...], kind: str, vocab_size: int | None,
                    pattern: str | None, special: tuple[str, ...], min_frequency: int,
                    output: Path) -> None:
    """Train a tokenizer on CORPUS (files, or folders of them: each file a document).

    \b
    Examples:
      alphagrad tokenizer train corpus/ --vocab-size 4096 -o tok.json
      alphagrad tokenizer train input.txt --kind char -o chars.json
      alphagrad tokenizer train a.txt b.txt --vocab-size 8192 --pattern gpt2 \\
          --special '<|endoftext|>' -o tok.json
    """
    files = corpus_files(corpus)
    if all(f.stat().st_size == 0 for f in files):
        raise UserError(f"the corpus is empty ({', '.join(map(str, files[:3]))}"
                        f"{', ...' if len(files) > 3 else ''} hold no text): nothing to train on")
    started = time.perf_counter()
    if kind == "bpe":
        if vocab_size is None:
            raise UserError("--vocab-size is required for --kind bpe (e.g. --vocab-size 4096)")
        with progress_bars() as progress:
            tok = BPETokenizer.train(
                files, vocab_size, pattern=pattern or "gpt4", special_tokens=special,
                min_frequency=min_frequency,
                progress=lambda done, total: progress("merges", done, total))
    else:
        if pattern is not None or special:
            raise UserError(f"--pattern and --special apply to --kind bpe, not {kind}")
        tok = KINDS[kind].train(read_text(files), vocab_size, min_frequency)
    output.parent.mkdir(parents=True, exist_ok=True)
    tok.save(output)
    click.echo(f"{kind} tokenizer: {tok.vocab_size} ids from {len(files)} file(s) in "
               f"{time.perf_counter() - started:.1f}s -> {output}")


def stdin_text() -> str:
    """Standard input as text: its bytes must be UTF-8 (they are not guessed at or escaped)."""
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"standard input is not UTF-8 text: byte {raw[e.start]:#04x} at offset "
                        f"{e.start} ({e.reason}); convert it first, e.g. with iconv") from None


def _piece(tok: Tokenizer, token_id: int) -> str:
    if hasattr(tok, "token_bytes"):
        return tok.token_bytes(token_id).decode("utf-8", errors="backslashreplace")
    return tok.decode([token_id])


@tokenizer.command("encode")
@click.argument("file", type=tokenizer_file)
@click.option("--text", help="Text to encode (default: standard input).")
@click.option("--pieces", is_flag=True, help="One line per token: its id and its text.")
@click.option("--allow-special", is_flag=True,
              help="Special-token text (e.g. <|endoftext|>) becomes its special id; without "
                   "this flag it is encoded as ordinary text.")
def encode(file: Path, text: str | None, pieces: bool, allow_special: bool) -> None:
    """Encode text with the tokenizer in FILE and print the ids (a JSON list).

    \b
    Examples:
      alphagrad tokenizer encode tok.json --text 'def main():'
      echo 'hello' | alphagrad tokenizer encode tok.json --pieces
      alphagrad tokenizer encode tok.json --allow-special --text 'end<|endoftext|>'
    """
    tok = load(file)
    text = stdin_text() if text is None else text
    if allow_special and not tok.special_tokens:
        raise UserError(f"{file} has no special tokens; --allow-special changes nothing")
    ids = tok.encode(text, allowed_special="all") if allow_special else tok.encode(text)
    if pieces:
        for i in ids:
            click.echo(f"{i}\t{json.dumps(_piece(tok, i), ensure_ascii=False)}")
    else:
        click.echo(json.dumps(ids))


@tokenizer.command("export")
@click.argument("file", type=tokenizer_file)
@click.option("--format", "fmt", type=click.Choice(["tiktoken", "hf"]), required=True,
              help="tiktoken: a ranks file (tiktoken.Encoding's mergeable_ranks); hf: a folder "
                   "that transformers' AutoTokenizer loads (tokenizer.json, "
                   "tokenizer_config.json).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The ranks file (tiktoken) or the folder (hf) to write.")
def export_tokenizer(file: Path, fmt: str, output: Path) -> None:
    """Write the BPE tokenizer in FILE for tiktoken (byte-level BPE) or Hugging Face.

    \b
    Examples:
      alphagrad tokenizer export tok.json --format tiktoken -o tok.tiktoken
      alphagrad tokenizer export tok.json --format hf -o tok-hf/
    """
    tok = load(file)
    if not isinstance(tok, BPETokenizer) and not (fmt == "hf" and isinstance(tok, SentencePieceBPE)):
        raise UserError(f"{file} is a {tok.kind} tokenizer; only byte-level BPE tokenizers have "
                        "a tiktoken form, and only BPE tokenizers a Hugging Face one")
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        tok.save_pretrained(output)
        click.echo(f"Hugging Face tokenizer ({tok.vocab_size} ids) -> {output}")
        return
    tok.save_tiktoken(output)
    click.echo(f"tiktoken ranks ({len(tok.mergeable_ranks())} tokens) -> {output}")
    click.echo(f"pattern: {tok.pattern}")
    if tok.special_tokens:
        click.echo(f"special tokens: {json.dumps(tok.special_tokens, ensure_ascii=False)}")


def last_part(text: str, fraction: float) -> str:
    """The last ``fraction`` of ``text``, starting at a line where one is near."""
    if fraction >= 1:
        return text
    start = int(len(text) * (1 - fraction))
    line = text.find("\n", start)
    return text[line + 1:] if 0 <= line < len(text) - 1 else text[start:]


@tokenizer.command("stats")
@click.argument("file", type=tokenizer_file)
@click.argument("corpus", nargs=-1, required=True, type=existing)
@click.option("--fraction", "--held-out", "fraction", type=click.FloatRange(0, 1, min_open=True),
              default=0.1, show_default=True,
              help="Measure on this last fraction of the corpus (1: all of it).")
def stats(file: Path, corpus: tuple[Path, ...], fraction: float) -> None:
    """Measure the tokenizer in FILE on CORPUS: bytes per token, coverage and unknown tokens.

    The figures say how the tokenizer does on unseen text only if it was not trained on
    CORPUS: give it other files (say, the ones prepare put in validation).

    \b
    Examples:
      alphagrad tokenizer stats tok.json corpus/
      alphagrad tokenizer stats chars.json other.txt --fraction 1
    """
    tok = load(file)
    text = last_part(read_text(corpus_files(corpus)), fraction)
    measured = tok.stats(text)
    rows = [[key, value] for key, value in measured.items()]
    if "coverage" not in measured:  # byte-level BPE encodes any text without <unk>
        rows += [["coverage", 1.0], ["oov_rate", 0.0]]
    part = "all" if fraction >= 1 else f"the last {fraction:.0%}"
    click.echo(f"{tok.kind} tokenizer, {tok.vocab_size} ids, on {count(len(text.encode()))} "
               f"bytes: {part} of the corpus given (unseen text only if the tokenizer was not "
               "trained on it)")
    click.echo(table(["metric", "value"], rows))

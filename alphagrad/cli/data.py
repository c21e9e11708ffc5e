"""``alphagrad prepare``: a corpus into token files for training."""

from __future__ import annotations

from pathlib import Path

import click

from alphagrad.cli.options import progress_bars, threads_option
from alphagrad.tokenizers import load
from alphagrad.train import prepare as prepare_data

SMALL_VAL = 1024  # validation tokens below which prepare warns: a common block_size


@click.command()
@click.argument("corpus", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--tokenizer", "tokenizer_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Tokenizer file (alphagrad tokenizer train, or a Hugging Face tokenizer.json).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Data folder to write: train.bin, val.bin, meta.json, tokenizer.json.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.1, show_default=True, help="Share of the corpus held out for validation.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the shuffle that picks the validation documents.")
@click.option("--separator", default="auto", show_default=True, metavar="TOKEN|auto|none",
              help="A special token put after every document; auto: the tokenizer's end-of-text "
                   "token (e.g. <|endoftext|>) if it has one.")
@threads_option
def prepare(corpus: tuple[Path, ...], tokenizer_path: Path, output: Path, val_fraction: float,
            seed: int, separator: str) -> None:
    """Tokenize CORPUS (files, or folders of them) into a data folder for alphagrad train.

    With several files, whole files go to validation; with one file, or a few that whole cannot
    come near --val-fraction, the text is cut at a line break instead (with a warning). Each
    file's tokens are exactly what the tokenizer's encode gives for its text.

    \b
    Examples:
      alphagrad prepare corpus/ --tokenizer tok.json -o data/corpus
      alphagrad prepare input.txt --tokenizer chars.json -o data/tiny --val-fraction 0.05
    """
    tok = load(tokenizer_path)
    with progress_bars() as progress:
        stats = prepare_data(list(corpus), tok, output, val_fraction=val_fraction, seed=seed,
                             progress=lambda done, total: progress("tokenize", done, total),
                             separator=None if separator == "none" else separator)
    click.echo(f"{output}: {stats['train_tokens']:,} train and {stats['val_tokens']:,} val tokens "
               f"({stats['documents']} documents"
               + (f" each followed by {stats['separator']}" if stats["separator"] else "")
               + f", vocab {stats['vocab_size']}) in {stats['seconds']:.1f}s")
    if stats["split_by"] == "bytes" and stats["documents"] > 1:
        click.echo(f"warning: whole documents could not give --val-fraction {val_fraction} (only "
                   f"{stats['documents']} of them); the split cut a document at a line break "
                   f"instead: {stats['val_bytes']:,} of {stats['train_bytes'] + stats['val_bytes']:,}"
                   " bytes in validation", err=True)
    if stats["val_tokens"] <= SMALL_VAL:
        click.echo(f"warning: the validation split has only {stats['val_tokens']} tokens; "
                   f"training needs block_size + 1 of them, so block_size can be at most "
                   f"{stats['val_tokens'] - 1} (a larger --val-fraction gives more)", err=True)

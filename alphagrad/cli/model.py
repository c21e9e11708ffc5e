"""``alphagrad sample``, ``eval``, ``export`` and ``import-hf``: what to do with a checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from alphagrad.cli.display import table
from alphagrad.cli.errors import UserError
from alphagrad.cli.options import checkpoint_argument, threads_option
from alphagrad.nn import llama_hf
from alphagrad.nn.hf import gpt2_config, to_hf
from alphagrad.nn.safetensors import save_safetensors
from alphagrad.tokenizers import BPETokenizer, SentencePieceBPE, from_dict
from alphagrad.train import TokenDataset, evaluate, evaluate_full, load_checkpoint
from alphagrad.train.checkpoint import save_checkpoint
from alphagrad.train.data import bytes_per_token
from alphagrad.train.export import save_weights
from alphagrad.train.sampling import load_model, load_pretrained, sample

existing = click.Path(exists=True, path_type=Path)


@contextlib.contextmanager
def atomic_path(path: Path, folder: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write into; renamed to ``path`` on success, removed
    on failure, so an interrupted export leaves nothing half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        else:
            tmp.unlink(missing_ok=True)
        raise


@click.command("sample")
@checkpoint_argument
@click.option("--prompt", default="\n", help="Text to continue (default: a line break).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.8, show_default=True,
              help="0 picks the likeliest token every time.")
@click.option("--top-k", type=click.IntRange(min=1), help="Sample among the k likeliest tokens.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True),
              help="Sample among the likeliest tokens that make up this much probability.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed, for the same text every time.")
@threads_option
def sample_command(checkpoint: Path, prompt: str, max_new_tokens: int, temperature: float,
                   top_k: int | None, top_p: float | None, seed: int | None) -> None:
    """Continue a prompt with the model in CKPT (a checkpoint, a run folder: its best, or a
    Hugging Face GPT-2 or Llama folder), printing tokens as they are made.

    \b
    Examples:
      alphagrad sample runs/20260101-120000 --prompt 'def ' --seed 0
      alphagrad sample model.ckpt --prompt 'class ' --max-new-tokens 500 --top-p 0.9
    """
    loaded = load_model(checkpoint)
    if loaded[1] is None:
        raise UserError(f"{checkpoint} has no tokenizer embedded, so a text prompt cannot be "
                        "encoded; sample from a checkpoint that alphagrad train wrote, or import "
                        "a Hugging Face folder that has a tokenizer.json")
    click.echo(prompt, nl=False)
    for piece in sample(loaded, prompt, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed, stream=True):
        click.echo(piece, nl=False)
    click.echo()


@click.command("eval")
@checkpoint_argument
@click.option("--data", required=True, type=existing, metavar="DIR|FILE",
              help="A data folder (its val.bin is used) or a token file.")
@click.option("--full", is_flag=True,
              help="Exact: every token, in consecutive windows of the model's block size.")
@click.option("--batches", type=click.IntRange(min=1), default=20, show_default=True,
              help="Without --full: batches of windows spread evenly over the data.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Windows per batch.")
@threads_option
def eval_command(checkpoint: Path, data: Path, full: bool, batches: int,
                 batch_size: int) -> None:
    """Loss, perplexity and bits per byte of the model in CKPT on held-out tokens: an
    estimate over --batches x --batch-size windows (the same ones every time, whatever the
    checkpoint), or with --full the exact figure over every token.

    \b
    Examples:
      alphagrad eval runs/20260101-120000 --data data/corpus
      alphagrad eval model.ckpt --data data/corpus --full
      alphagrad eval model.ckpt --data data/corpus/train.bin --batches 50
    """
    model, tokenizer, _ = load_model(checkpoint)
    token_file = data / "val.bin" if data.is_dir() else data
    dataset = TokenDataset(token_file)
    if tokenizer is not None:
        dataset.check_tokenizer(tokenizer)
    elif dataset.vocab_size > model.config.vocab_size:
        raise ValueError(f"{token_file} has vocab_size {dataset.vocab_size}, more than the "
                         f"model's {model.config.vocab_size}")
    block = model.config.block_size
    if full:
        result = evaluate_full(model, dataset, block, batch_size, bytes_per_token(token_file))
        how = f"all {len(dataset) - 1:,} predicted tokens, windows of {block}"
    else:
        block = min(block, len(dataset) - 1)
        result = evaluate(model, dataset, batch_size, block, batches,
                          bytes_per_token(token_file))
        how = f"estimate over {batches} x {batch_size} windows of {block} tokens; --full: exact"
    click.echo(f"{token_file}: {len(dataset):,} tokens ({how})")
    click.echo(table(["metric", "value"], [[k.replace("_", " "), v] for k, v in result.items()]))


@click.command()
@checkpoint_argument
@click.option("--format", "fmt", type=click.Choice(["safetensors", "hf"]), default="safetensors",
              show_default=True, help="safetensors: one file, our weight names; hf: a Hugging "
                                      "Face GPT-2 or Llama folder (config.json, "
                                      "model.safetensors, tokenizer files).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The file (safetensors) or the new folder (hf) to write.")
def export(checkpoint: Path, fmt: str, output: Path) -> None:
    """Write the weights in CKPT for other tools.

    \b
    Examples:
      alphagrad export runs/20260101-120000 -o model.safetensors
      alphagrad export model.ckpt --format hf -o gpt2-mine/
    """
    ckpt = load_checkpoint(checkpoint)
    if fmt == "safetensors":
        with atomic_path(output) as tmp:
            n = save_weights(tmp, ckpt)
        click.echo(f"{n} tensors -> {output}")
        return
    weights = {k: v for k, v in ckpt.model_state.items() if k not in ckpt.tied}
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"{output} exists and is not an empty folder; choose a new folder")
    tokenizer = from_dict(ckpt.tokenizer) if ckpt.tokenizer is not None else None
    with atomic_path(output, folder=True) as tmp:
        if ckpt.model_kind == "llama":
            llama_hf.write_folder(tmp, ckpt.model_config, weights, ckpt.tied)
            name = "Llama"
        else:
            eot = tokenizer.end_of_text if tokenizer is not None else None
            hf_config = gpt2_config(ckpt.model_config,
                                    tokenizer.special_tokens[eot] if eot else None)
            (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
            save_safetensors(tmp / "model.safetensors",
                             {k.removeprefix("transformer."): v for k, v in to_hf(weights).items()},
                             metadata={"format": "pt"})
            name = "GPT-2"
        if isinstance(tokenizer, (BPETokenizer, SentencePieceBPE)):
            tokenizer.save_pretrained(tmp, model_max_length=ckpt.model_config["block_size"])
    note = "" if isinstance(tokenizer, (BPETokenizer, SentencePieceBPE)) else \
        " (no tokenizer.json: only BPE tokenizers have a Hugging Face form)"
    click.echo(f"Hugging Face {name} folder -> {output}{note}")


@click.command("import-hf")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The checkpoint file to write.")
def import_hf(folder: Path, output: Path) -> None:
    """Turn a local Hugging Face GPT-2 or Llama folder (config.json, model.safetensors or its
    shards and, if there, tokenizer.json and tokenizer_config.json) into a checkpoint that
    sample and eval read.

    \b
    Example:
      alphagrad import-hf ~/models/SmolLM-135M -o smollm.ckpt
      alphagrad sample smollm.ckpt --prompt 'Hello, I am'
    """
    model, tokenizer, _ = load_pretrained(folder)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output, model_kind=model.kind, model_config=dataclasses.asdict(model.config),
                    model_state=model.state_dict(), tied=model.tied_weights(),
                    tokenizer=tokenizer.to_dict() if tokenizer is not None else None)
    click.echo(f"{model.num_parameters():,} parameters"
               + (f", tokenizer of {tokenizer.vocab_size} ids" if tokenizer else "")
               + f" -> {output}")

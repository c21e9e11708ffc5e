"""``alphagrad train``: a preset, a config file or flags in; a run folder with checkpoints out."""

from __future__ import annotations

import time
from pathlib import Path

import click

from alphagrad.cli.display import TrainingStatus, cell, count, duration, table
from alphagrad.cli.errors import INTERRUPTED, Failure, UserError
from alphagrad.cli.options import progress_bars, runs_root_option
from alphagrad.train import PRESETS, Trainer, TrainingDiverged
from alphagrad.train.pipeline import make_trainer, resume_trainer


def _list_presets(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    rows = [[p.name, p.tokenizer_kind + (f" {p.vocab_size}" if p.vocab_size else ""),
             f"{p.config['n_layer']}x{p.config['n_embd']}", p.config["max_iters"],
             p.description] for p in PRESETS.values()]
    click.echo(table(["preset", "tokenizer", "layers x width", "steps", "about"], rows))
    ctx.exit()


def _header(trainer: Trainer) -> str:
    c = trainer.config
    return (f"run {trainer.run.path}: {count(trainer.model.num_parameters())} parameters "
            f"({c.n_layer} layers x {c.n_embd}), data {c.data_dir} "
            f"({count(len(trainer.train_data))} train tokens, vocab "
            f"{trainer.train_data.vocab_size}), {c.max_iters} steps")


def _print_samples(trainer: Trainer) -> None:
    for record in trainer.run.read_samples():
        if record.get("step") == trainer.step:
            click.echo(f"--- sample (prompt {record['prompt']!r}, seed {record['seed']}) ---")
            click.echo(record["prompt"] + record["text"])


@click.command()
@click.option("--preset", help="Named defaults: model size, tokenizer, steps "
                               "(see --list-presets). Without --data: the built-in corpus.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path),
              help="A TOML file of training settings (key = value); overrides the preset.")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A data folder made by alphagrad prepare.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The run folder (default: a new folder under --runs-root).")
@click.option("--resume", type=click.Path(exists=True, path_type=Path), metavar="RUN_DIR|CKPT",
              help="Continue a run from its latest checkpoint (or from the given checkpoint).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set max_iters=200 (repeatable; last word).")
@runs_root_option
@click.option("--list-presets", is_flag=True, expose_value=False, is_eager=True,
              callback=_list_presets, help="List the presets and exit.")
def train(preset: str | None, config_file: Path | None, data: Path | None, out: Path | None,
          resume: Path | None, overrides: tuple[str, ...], runs_root: Path) -> None:
    """Train a GPT, showing progress; Ctrl-C saves a checkpoint and stops.

    Settings come from the preset, then --config, then --data/--out, then --set, each
    replacing only the fields it names. With a preset and no data, the model trains on the
    standard library's own Python sources (prepared once under RUNS_ROOT/data/).

    \b
    Examples:
      alphagrad train --preset char-tiny
      alphagrad train --preset bpe-small --data data/corpus --set max_iters=5000
      alphagrad train --config train.toml --out runs/exp1
      alphagrad train --resume runs/exp1 --set max_iters=8000
    """
    if resume is not None:
        given = [name for name, value in (("--preset", preset), ("--config", config_file),
                                          ("--data", data), ("--out", out)) if value]
        if given:
            raise UserError(f"--resume continues a run with its own settings; drop "
                            f"{', '.join(given)}")
        source = click.get_current_context().get_parameter_source("runs_root")
        trainer = resume_trainer(resume, overrides, runs_root=None if source is
                                 click.core.ParameterSource.DEFAULT else runs_root)
    else:
        with progress_bars() as progress:
            trainer = make_trainer(preset, data=data, config_file=config_file,
                                   overrides=overrides, out=out, runs_root=runs_root,
                                   log=click.echo, progress=progress)
    status = TrainingStatus(trainer.config.max_iters, trainer.config.log_interval)
    trainer.callbacks.append(status)
    click.echo(_header(trainer) + (f", resuming at step {trainer.step}" if trainer.step else ""))
    started, first_tokens = time.perf_counter(), trainer.tokens_seen
    try:
        final = trainer.fit()
    except TrainingDiverged as e:
        status.close()
        raise Failure(str(e)) from None
    status.close()
    seconds = time.perf_counter() - started
    if final["status"] == "interrupted":
        click.echo(f"interrupted at step {trainer.step}; checkpoint saved in "
                   f"{trainer.run.checkpoints.latest()}", err=True)
        click.echo(f"resume with: alphagrad train --resume {trainer.run.path}", err=True)
        raise click.exceptions.Exit(INTERRUPTED)
    _print_samples(trainer)
    last = status.last_eval or {}
    click.echo(f"{final['status']}: step {trainer.step}, val loss {cell(last.get('val_loss'))} "
               f"(best {cell(final['best_val_loss'])}), "
               f"{count((trainer.tokens_seen - first_tokens) / seconds)} tok/s over "
               f"{duration(seconds)}, run {trainer.run.path}")

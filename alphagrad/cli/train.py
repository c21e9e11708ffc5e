"""``alphagrad train``: a preset, a config file or flags in; a run folder with checkpoints out."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from alphagrad.cli.display import cell, table
from alphagrad.cli.errors import INTERRUPTED, USER_MISTAKES, Failure, UserError, describe
from alphagrad.cli.options import progress_bars, resolve_run, runs_root_option
from alphagrad.train import PRESETS, Trainer, TrainingDiverged
from alphagrad.train.distributed import (
    CollectiveTimeout,
    RanksOutOfSync,
    World,
    current_world,
    launched_by_mpi,
    mpiexec_command,
)
from alphagrad.train.pipeline import make_trainer, resume_trainer
from alphagrad.train.progress import TrainingStatus, count, duration


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
            f"({c.model}, {c.n_layer} layers x {c.n_embd}), data {c.data_dir} "
            f"({count(len(trainer.train_data))} train tokens, vocab "
            f"{trainer.train_data.vocab_size}), {c.max_iters} steps")


def _launch(nproc: int) -> None:
    """Run this same command on ``nproc`` ranks under mpiexec; exit with its status."""
    if launched_by_mpi():
        raise UserError("--nproc starts mpiexec itself; under an MPI launcher leave it out")
    args, skip = [], False
    for arg in sys.argv[1:]:
        if not skip and arg != "--nproc" and not arg.startswith("--nproc="):
            args.append(arg)
        skip = arg == "--nproc"
    command = mpiexec_command(nproc, args)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the ranks
    try:
        status = subprocess.run(command, check=False).returncode
    finally:
        signal.signal(signal.SIGINT, previous)
    if status not in (0, 1, 2, INTERRUPTED, 128 + signal.SIGTERM):
        click.echo(f"error: the {nproc}-rank job stopped (mpiexec exit status {status}): a rank "
                   "failed or was killed, see above. The run's checkpoints are intact; continue "
                   f"with: alphagrad train --resume RUN_DIR --nproc {nproc}", err=True)
    raise click.exceptions.Exit(status)


def _report(error: BaseException, rank: int) -> int:
    """Print ``error`` as the CLI would, naming the rank; return the exit status."""
    if isinstance(error, KeyboardInterrupt):
        click.echo(f"error: rank {rank}: interrupted", err=True)
        return INTERRUPTED
    if isinstance(error, USER_MISTAKES):
        error = UserError(describe(error))
    elif isinstance(error, (CollectiveTimeout, RanksOutOfSync)):
        error = Failure(str(error))
    if isinstance(error, click.ClickException):
        click.echo(f"error: rank {rank}: {error.format_message()}", err=True)
        return error.exit_code
    click.echo(f"error: rank {rank}:", err=True)
    traceback.print_exception(error)
    return 1


@contextlib.contextmanager
def _all_ranks_stop_on_error(world: World) -> Iterator[None]:
    """An error on one rank ends every rank: the others would wait for it in MPI forever."""
    try:
        yield
    except click.exceptions.Exit:
        raise  # a clean stop (Ctrl-C): every rank takes it at the same step
    except BaseException as error:  # whatever it is, the other ranks must hear of it
        if world.size == 1:
            raise
        world.abort(_report(error, world.rank))


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
@click.option("--init-from", type=click.Path(exists=True, file_okay=False, path_type=Path),
              metavar="FOLDER", help="Start from the weights of a Hugging Face GPT-2 or Llama "
                                     "folder (fine-tuning); the data must use its tokenizer.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="RUN|CKPT",
              help="Continue a run (a folder, or a name under --runs-root) from its latest "
                   "checkpoint, or from the given checkpoint.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set max_iters=200 (repeatable; last word).")
@click.option("--nproc", type=int, metavar="N",
              help="Train data-parallel on N processes of this machine (starts mpiexec; needs "
                   "alphagrad[mpi]). Each takes cores/N threads unless num_threads is set.")
@runs_root_option
@click.option("--list-presets", is_flag=True, expose_value=False, is_eager=True,
              callback=_list_presets, help="List the presets and exit.")
def train(preset: str | None, config_file: Path | None, data: Path | None, out: Path | None,
          init_from: Path | None, resume: Path | None, overrides: tuple[str, ...], nproc: int | None,
          runs_root: Path) -> None:
    """Train a GPT or a Llama (--set model=llama), showing progress; Ctrl-C saves a checkpoint
    and stops.

    Settings come from the preset, then --config, then --data/--out, then --set, each
    replacing only the fields it names. With a preset and no data, the model trains on the
    standard library's own Python sources (prepared once under RUNS_ROOT/data/).

    \b
    Examples:
      alphagrad train --preset char-tiny
      alphagrad train --preset bpe-small --data data/corpus --set max_iters=5000
      alphagrad train --config train.toml --out runs/exp1
      alphagrad train --preset llama-small --set n_kv_head=3
      alphagrad train --init-from SmolLM-135M/ --data data/mine --set block_size=512
      alphagrad train --resume runs/exp1 --set max_iters=8000
      alphagrad train --preset char-small --nproc 2        # two data-parallel processes
      mpiexec -n 8 --hostfile hosts alphagrad train --preset char-small
    """
    if nproc is not None:
        _launch(nproc)
    world = current_world()
    with _all_ranks_stop_on_error(world), warnings.catch_warnings():
        warnings.showwarning = _show_warning
        _train(world, preset, config_file, data, out, init_from, resume, overrides, runs_root)


def _show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """A warning (e.g. the runs database is busy) as one ``warning: ...`` line on stderr."""
    click.echo(f"warning: {message}", err=True)


def _train(world: World, preset: str | None, config_file: Path | None, data: Path | None,
           out: Path | None, init_from: Path | None, resume: Path | None, overrides: tuple[str, ...],
           runs_root: Path) -> None:
    echo = click.echo if world.is_main else (lambda *args, **kwargs: None)  # rank 0 speaks
    if resume is not None:
        given = [name for name, value in (("--preset", preset), ("--config", config_file),
                                          ("--data", data), ("--out", out),
                                          ("--init-from", init_from)) if value]
        if given:
            raise UserError(f"--resume continues a run with its own settings; drop "
                            f"{', '.join(given)}")
        source = click.get_current_context().get_parameter_source("runs_root")
        given_root = None if source is click.core.ParameterSource.DEFAULT else runs_root
        trainer = resume_trainer(resolve_run(resume, runs_root), overrides, runs_root=given_root)
    else:
        with progress_bars() if world.is_main else contextlib.nullcontext() as progress:
            trainer = make_trainer(preset, data=data, config_file=config_file, init_from=init_from,
                                   overrides=overrides, out=out, runs_root=runs_root,
                                   log=echo, progress=progress)
    status = TrainingStatus(trainer.config.max_iters, trainer.config.log_interval)
    if world.is_main:
        trainer.callbacks.append(status)
    ranks = f", {world.size} ranks on {len(set(world.hosts))} hosts" if world.size > 1 else ""
    echo(_header(trainer) + ranks
         + (f", resuming at step {trainer.step}" if trainer.step else ""))
    started, first_tokens = time.perf_counter(), trainer.tokens_seen

    def show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
        status.close()  # a line of its own, not in the middle of the status line
        _show_warning(message)

    try:
        warnings.showwarning = show_warning
        final = trainer.fit()
    except TrainingDiverged as e:
        status.close()
        raise Failure(str(e)) from None
    status.close()
    seconds = time.perf_counter() - started
    if final["status"] == "interrupted":
        echo(f"interrupted at step {trainer.step}; checkpoint saved in "
             f"{trainer.run.checkpoints.latest()}", err=True)
        echo(f"resume with: alphagrad train --resume {trainer.run.path}", err=True)
        # the shell's status for a command a signal stopped: 128 + its number (SIGTERM: 143)
        raise click.exceptions.Exit(128 + (trainer.stop_signal or signal.SIGINT))
    if not world.is_main:
        return
    _print_samples(trainer)
    last = status.last_eval or {}
    click.echo(f"{final['status']}: step {trainer.step}, val loss {cell(last.get('val_loss'))} "
               f"(best {cell(final['best_val_loss'])}), "
               f"{count((trainer.tokens_seen - first_tokens) / seconds)} tok/s over "
               f"{duration(seconds)}, run {trainer.run.path}")

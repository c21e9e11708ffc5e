"""Options and helpers that several commands share."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from alphagrad.cli.errors import UserError
from alphagrad.tensor import set_num_threads
from alphagrad.train.sampling import checkpoint_file

runs_root_option = click.option(
    "--runs-root", type=click.Path(file_okay=False, path_type=Path), default="runs",
    envvar="ALPHAGRAD_RUNS", show_default=True, show_envvar=True,
    help="Folder of run folders and of the runs database (alphagrad.db).")


def resolve_run(path: Path, runs_root: Path) -> Path:
    """``path`` if it exists, else the run folder of that name under ``runs_root``."""
    if path.exists() or not (runs_root / path).exists():
        if not path.exists():
            raise UserError(f"{path} is not a file or folder, nor a run in {runs_root}/ "
                            "(alphagrad runs list shows the runs)")
        return path
    return runs_root / path


def checkpoint_argument(command: Callable) -> Callable:
    """The ``CKPT`` argument: a checkpoint file, a run folder (its best checkpoint, else its
    latest) or a run's name under ``--runs-root``; the command receives the checkpoint file."""
    @functools.wraps(command)
    def resolved(checkpoint: Path, runs_root: Path, **kwargs: Any) -> Any:
        return command(checkpoint=checkpoint_file(resolve_run(checkpoint, runs_root)), **kwargs)

    argument = click.argument("checkpoint", type=click.Path(path_type=Path), metavar="CKPT")
    return argument(runs_root_option(resolved))


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None:
        set_num_threads(value)
    return value


threads_option = click.option(
    "--threads", type=click.IntRange(min=1), callback=_set_threads, expose_value=False,
    help="Threads for the kernels and BLAS (default: the cores other processes leave free, "
         "no more than a CPU quota allows).")


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(phase, done, total)`` callback that shows a bar for the current phase on
    stderr when it is a terminal; elsewhere (a log file, a pipe) nothing, rather than click's
    bare phase labels."""
    if not sys.stderr.isatty():
        yield lambda phase, done, total: None
        return
    current: dict[str, Any] = {}

    def finish() -> None:
        for bar in current.values():
            bar.render_finish()
        current.clear()

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in current:
            finish()
            current[phase] = click.progressbar(length=total, label=phase, show_pos=True,
                                               file=sys.stderr).__enter__()
        bar = current[phase]
        bar.update(done - bar.pos)

    try:
        yield progress
    finally:
        finish()

"""Options and helpers that several commands share."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from alphagrad.tensor import set_num_threads

runs_root_option = click.option(
    "--runs-root", type=click.Path(file_okay=False, path_type=Path), default="runs",
    envvar="ALPHAGRAD_RUNS", show_default=True, show_envvar=True,
    help="Folder of run folders and of the runs database (alphagrad.db).")


def _set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None:
        set_num_threads(value)
    return value


threads_option = click.option(
    "--threads", type=click.IntRange(min=1), callback=_set_threads, expose_value=False,
    help="Threads for the kernels and BLAS (default: all cores).")


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

"""Text for the terminal: tables, durations, counts, and the live training status line."""

from __future__ import annotations

import math
import numbers
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import click


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def count(n: float) -> str:
    """``950``, ``12.3k``, ``4.56M``: a count in three significant figures."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}" if isinstance(n, float) else str(n)


def cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.3g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: numbers right-aligned, text left-aligned, ``None`` as ``-``."""
    cells = [[cell(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], numbers.Number) or row[i] is None for row in rows)
               for i in range(len(headers))]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


class TrainingStatus:
    """A Trainer callback that shows progress: on a terminal one status line rewritten in
    place every step, elsewhere one line per ``log_interval`` steps; evaluations and
    checkpoints get lines of their own."""

    def __init__(self, max_iters: int, log_interval: int, tty: bool | None = None):
        self.max_iters, self.log_interval = max_iters, log_interval
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._shown = 0  # width of the status line on screen, 0 if none
        self.last_eval: dict[str, Any] | None = None

    def __call__(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "step":
            text = self.status(record)
            if self.tty:  # cut to the terminal's width: a wrapped line cannot be rewritten
                text = text[:shutil.get_terminal_size().columns - 1]
                click.echo("\r" + text.ljust(self._shown), nl=False)
                self._shown = len(text)
            elif record["step"] % self.log_interval == 0 or record["step"] == 1:
                click.echo(text)
        elif kind == "eval":
            self.last_eval = record
            self.close()
            bpb = record.get("val_bits_per_byte")
            click.echo(f"eval step {record['step']}: train loss {record['train_loss']:.4f}, val "
                       f"loss {record['val_loss']:.4f}, val perplexity "
                       f"{record['val_perplexity']:.2f}"
                       + (f", {bpb:.3f} bits/byte" if bpb is not None else ""))
        elif kind == "checkpoint":
            self.close()
            click.echo(f"  saved {record['path']}" + (" (best so far)" if record["is_best"] else ""))

    def status(self, record: dict[str, Any]) -> str:
        return (f"step {record['step']}/{self.max_iters} | loss {record['loss']:.4f} | "
                f"lr {record['lr']:.2e} | {count(record['tokens_per_sec'])} tok/s | "
                f"MFU {100 * record['mfu']:.1f}% | ETA {duration(record['eta_seconds'])}")

    def close(self) -> None:
        """Clear the status line, so the next output starts on a fresh line."""
        if self._shown:
            click.echo("\r" + " " * self._shown + "\r", nl=False)
            self._shown = 0

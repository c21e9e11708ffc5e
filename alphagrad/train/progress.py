"""Live training progress, for ``Trainer.fit()`` in a script or notebook and for the command
line alike: durations, counts and the status line.

    >>> trainer.fit()                 # shows progress (one line rewritten in place on a terminal)
    >>> trainer.fit(progress=False)   # silent
"""

from __future__ import annotations

import shutil
import sys
from typing import IO, Any


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


def rewrites_in_place(file: IO[str]) -> bool:
    """Whether ``\\r`` returns to the start of the line: a terminal, or a Jupyter notebook."""
    interactive = getattr(file, "isatty", lambda: False)()
    return interactive or "ipykernel" in sys.modules


EVAL_FIELDS = (("train_loss", "train loss {:.4f}"), ("val_loss", "val loss {:.4f}"),
               ("val_perplexity", "val perplexity {:.2f}"), ("val_bits_per_byte", "{:.3f} bits/byte"))


class TrainingStatus:
    """A Trainer callback that shows progress: where the output rewrites in place, one status
    line rewritten every step, elsewhere one line per ``log_interval`` steps; evaluations and
    checkpoints get lines of their own. Writes to ``file`` (default: standard output)."""

    def __init__(self, max_iters: int, log_interval: int, tty: bool | None = None,
                 file: IO[str] | None = None):
        self.max_iters, self.log_interval = max_iters, log_interval
        self._file = file
        self.tty = rewrites_in_place(self.file) if tty is None else tty
        self._shown = 0  # width of the status line on screen, 0 if none
        self.last_eval: dict[str, Any] | None = None

    @property
    def file(self) -> IO[str]:
        return self._file or sys.stdout  # looked up late, so redirections apply

    def _write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()

    def _rewrite(self, text: str) -> None:
        """Show ``text`` as the status line, in place of the last one."""
        text = text[:shutil.get_terminal_size().columns - 1]  # a wrapped line cannot be rewritten
        self._write("\r" + text.ljust(self._shown))
        self._shown = len(text)

    def starting(self, step: int) -> None:
        """Say what the first step of a session waits for where the status line rewrites in
        place: a process's first run compiles the kernels (about 30 s for a small GPT on two
        cores), later runs load them from Numba's cache. The first status line replaces it."""
        if self.tty:
            self._rewrite(f"step {step}/{self.max_iters} | compiling the kernels, or loading "
                          "them from the cache")

    def __call__(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        if kind == "step":
            text = self.status(record)
            if self.tty:
                self._rewrite(text)
            elif record["step"] % self.log_interval == 0 or record["step"] == 1:
                self._write(text + "\n")
        elif kind == "eval":
            self.last_eval = record
            self.close()
            shown = [template.format(record[key]) for key, template in EVAL_FIELDS
                     if record.get(key) is not None]
            self._write(f"eval step {record['step']}: {', '.join(shown)}\n")
        elif kind == "checkpoint":
            self.close()
            self._write(f"  saved {record['path']}"
                        + (" (best so far)" if record["is_best"] else "") + "\n")

    def status(self, record: dict[str, Any]) -> str:
        eta = record.get("eta_seconds")
        return (f"step {record['step']}/{self.max_iters} | loss {record['loss']:.4f} | "
                f"lr {record['lr']:.2e} | {count(record['tokens_per_sec'])} tok/s | "
                f"MFU {100 * record['mfu']:.1f}% | ETA {'-' if eta is None else duration(eta)}")

    def close(self) -> None:
        """Clear the status line, so the next output starts on a fresh line."""
        if self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

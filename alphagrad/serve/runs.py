"""Training runs as the server shows them, read from the run folders and the runs database.

Nothing here writes: the folders are read as a training process leaves them (a torn last line
of metrics.jsonl is skipped until it is whole), and the database is opened read-only.

    runs = RunsReader("runs")
    runs.summaries()                  # the runs table: status, step, losses, tok/s, ETA
    runs.detail("20260101-120000")    # settings, evaluations, checkpoints, samples
    watcher = RunsWatcher(runs)       # what changed since the last poll, for live updates
    watcher.snapshot(); watcher.poll()
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from alphagrad.train.run import RunDir
from alphagrad.train.rundb import DB_NAME


class UnknownRun(KeyError):
    pass


def _last(records: list[dict], kind: str, key: str) -> Any:
    return next((r[key] for r in reversed(records) if r.get("kind") == kind and key in r), None)


class RunsReader:
    """The run folders under ``root`` (any depth), each known by its path relative to it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folders(self) -> dict[str, Path]:
        if not self.root.is_dir():
            return {}
        found = {}
        for manifest in sorted(self.root.rglob("manifest.json")):
            folder = manifest.parent
            if (folder / "config.toml").is_file():
                found[folder.relative_to(self.root).as_posix()] = folder
        return found

    def open(self, run_id: str) -> RunDir:
        folder = self.folders().get(run_id)
        if folder is None:
            raise UnknownRun(f"no run {run_id!r} under {self.root}")
        return RunDir.open(folder)

    def summary(self, run_id: str, run: RunDir, metrics: list[dict] | None = None) -> dict:
        """One row of the runs table."""
        manifest = run.manifest
        metrics = run.read_metrics() if metrics is None else metrics
        final = manifest.get("final_metrics") or {}
        running = manifest.get("status") == "running"
        return {
            "id": run_id, "name": run.name, "status": manifest.get("status"),
            "created": manifest.get("created"), "finished": manifest.get("finished"),
            "preset": run.config.preset, "max_iters": run.config.max_iters,
            "parameters": manifest.get("parameters"),
            "step": max((r["step"] for r in metrics if isinstance(r.get("step"), int)),
                        default=0),
            "train_loss": _last(metrics, "step", "loss"),
            "val_loss": _last(metrics, "eval", "val_loss"),
            "best_val_loss": final.get("best_val_loss") or min(
                (r["val_loss"] for r in metrics if r.get("kind") == "eval"), default=None),
            "tokens_per_sec": _last(metrics, "step", "tokens_per_sec"),
            "eta_seconds": _last(metrics, "step", "eta_seconds") if running else None,
        }

    def summaries(self) -> list[dict]:
        rows = []
        for run_id, folder in self.folders().items():
            with contextlib.suppress(ValueError, OSError):  # a folder being created, or damaged
                rows.append(self.summary(run_id, RunDir.open(folder)))
        return rows

    def detail(self, run_id: str) -> dict:
        """Everything the page shows about one run."""
        run = self.open(run_id)
        metrics = run.read_metrics()
        return {**self.summary(run_id, run, metrics), "config": run.config.to_dict(),
                "manifest": run.manifest,
                "evaluations": [r for r in metrics if r.get("kind") == "eval"],
                "checkpoints": self.checkpoints(run), "samples": run.read_samples()}

    def metrics(self, run_id: str, after: int = -1) -> list[dict]:
        """The run's metric records of steps after ``after``."""
        return [r for r in self.open(run_id).read_metrics()
                if isinstance(r.get("step"), int) and r["step"] > after]

    def checkpoints(self, run: RunDir) -> list[dict]:
        """The checkpoint files on disk, with the validation loss the database has for each."""
        known = self._database_checkpoints(run)
        files = [*run.checkpoints.steps(), run.checkpoints.best()]
        rows = []
        for path in filter(None, files):
            is_best = path == run.checkpoints.best_path
            row = known.get("best" if is_best else str(path.resolve()), {})
            step = int(path.stem.split("-")[1]) if path.stem.startswith("step-") else row.get("step")
            rows.append({"file": path.name, "step": step, "bytes": path.stat().st_size,
                         "is_best": is_best,
                         "val_loss": row.get("val_loss")})
        return rows

    def _database_checkpoints(self, run: RunDir) -> dict[str, dict]:
        """``{resolved path or "best": {step, val_loss}}`` of the run's rows in the database
        (which records best.ckpt as the step file it copies)."""
        db = self.root / DB_NAME
        if not db.is_file():
            return {}
        try:
            with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro",
                                                    uri=True, timeout=2)) as conn:
                rows = conn.execute(
                    "SELECT step, checkpoints.path, is_best, val_loss FROM checkpoints JOIN runs "
                    "ON runs.id = checkpoints.run_id WHERE runs.path = ?",
                    (self._key(run.path),)).fetchall()
        except sqlite3.Error:
            return {}
        known = {}
        for step, path, is_best, val_loss in rows:
            known[str((self.root / path).resolve())] = {"step": step, "val_loss": val_loss}
            if is_best:
                known["best"] = known[str((self.root / path).resolve())]
        return known

    def _key(self, folder: Path) -> str:
        """How the database names a run folder (relative to the root when inside it)."""
        try:
            return folder.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(folder.resolve())


class RunsWatcher:
    """What changed under a runs root since the last look: new runs, new metric records
    (metrics.jsonl read from where it was left), changes of status."""

    def __init__(self, reader: RunsReader):
        self.reader = reader
        self._offsets: dict[str, int] = {}
        self._status: dict[str, str | None] = {}

    def snapshot(self) -> list[dict]:
        """Every run now; later polls report what comes after."""
        rows = []
        for run_id, folder in self.reader.folders().items():
            with contextlib.suppress(ValueError, OSError):
                run = RunDir.open(folder)
                records, self._offsets[run_id] = _read_from(run.metrics_path, 0)
                rows.append(self.reader.summary(run_id, run, records))
                self._status[run_id] = rows[-1]["status"]
        return rows

    def poll(self) -> list[tuple[str, dict]]:
        """``(event, data)`` pairs: ``run_started`` (a new run's row), ``metrics`` (a run's new
        records), ``run_updated`` / ``run_finished`` (its row, when its status changed)."""
        events = []
        for run_id, folder in self.reader.folders().items():
            try:
                run = RunDir.open(folder)
                status = run.manifest.get("status")
                new = run_id not in self._offsets
                offset = self._offsets.get(run_id, 0)
                if run.metrics_path.exists() and run.metrics_path.stat().st_size < offset:
                    offset = 0  # rewritten (a resumed run drops the steps it will redo)
                records, self._offsets[run_id] = _read_from(run.metrics_path, offset)
            except (ValueError, OSError):
                continue
            if new:
                events.append(("run_started", self.reader.summary(run_id, run)))
            if records:
                events.append(("metrics", {"id": run_id, "records": records}))
            if status != self._status.get(run_id) and not (new and status == "running"):
                kind = "run_updated" if status == "running" else "run_finished"
                events.append((kind, self.reader.summary(run_id, run)))
            self._status[run_id] = status
        return events


def _read_from(path: Path, offset: int) -> tuple[list[dict], int]:
    """The whole JSON lines of ``path`` after byte ``offset``, and the offset after them."""
    if not path.exists():
        return [], 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
    records = []
    for line in data[:end].splitlines():
        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
            records.append(json.loads(line))
    return records, offset + end


def finite(data: Any) -> Any:
    """``data`` with NaN and infinities (a diverged loss) as None: JSON has neither."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [finite(v) for v in data]
    return data

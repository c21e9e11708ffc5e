"""A run's folder: everything one training run leaves behind, in files a person can read.

    run = RunDir.create(make_run_folder("runs"), config)   # holds the folder's writer lock
    run.log_metrics({"step": 10, "split": "train", "loss": 2.31, "lr": 1e-3})
    run.checkpoints.save(250, is_best=True, model_kind="gpt", ...)
    run.finish(final_metrics={"val_loss": 1.87}, tokens_seen=384_000)

    config.toml     the TrainConfig, as given
    manifest.json   versions, seed, CPU, threads, times, status, final metrics (rewritten atomically)
    metrics.jsonl   one JSON object per line, appended as training goes
    samples.jsonl   generated text, one JSON object per line
    checkpoints/    step-XXXXXXXX.ckpt (the last few) and best.ckpt
    writer.lock     locked by the one process writing to the folder (see runlock.py)
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad import __version__
from alphagrad._atomic import atomic_write_text, atomic_writer, remove_temporary_files
from alphagrad.tensor import get_num_threads
from alphagrad.train.checkpoint import CheckpointError, CheckpointManager, checkpoint_info
from alphagrad.train.config import TrainConfig
from alphagrad.train.runlock import RunInUse, RunLock


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Versions and hardware, for a run's manifest."""
    try:
        numba_version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba_version = None
    return {"alphagrad": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba_version, "platform": platform.platform(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "num_threads": get_num_threads()}


def default_runs_root() -> Path:
    """Where runs go when no root is given: ``$ALPHAGRAD_RUNS``, else ``runs``."""
    return Path(os.environ.get("ALPHAGRAD_RUNS") or "runs")


def make_run_folder(root: str | Path | None = None, name: str | None = None) -> Path:
    """Create and return a new, empty folder under ``root`` (default: ``default_runs_root()``),
    named ``name`` or after the current time, with ``-2``, ``-3``... added if that is taken.

    The folder is created exclusively, so processes starting at the same moment each get
    their own.
    """
    root = Path(root) if root is not None else default_runs_root()
    root.mkdir(parents=True, exist_ok=True)
    base = name or time.strftime("%Y%m%d-%H%M%S")
    path, n = root / base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = root / f"{base}-{n}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} to a run record")


def _append_lines(path: Path, records: list[dict], first: bool) -> None:
    """Append JSON lines; on the ``first`` append, a crash's torn last line is cut off first."""
    for record in records:
        if not isinstance(record, dict):
            raise TypeError(f"a run record must be a dict, got {type(record).__name__}")
    text = _json_lines(records)
    if first:
        _drop_torn_line(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()


def _read_lines(path: Path) -> list[dict]:
    """The records of a JSON-lines file; a last line with no newline (cut off by a crash) is
    left out."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines[:-1], 1):  # lines[-1] is "" or a torn line
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not a JSON record ({e.msg})") from None
    return records


def _json_lines(records: list[dict]) -> str:
    return "".join(json.dumps(r, default=_json_default) + "\n" for r in records)


def _checkpoint_step(path: Path) -> int | None:
    """The training step a checkpoint file holds (None if unreadable or without one)."""
    try:
        step = (checkpoint_info(path)["train_state"] or {}).get("step")
    except CheckpointError:
        return None
    return step if isinstance(step, int) else None


def _drop_torn_line(path: Path) -> None:
    data = path.read_bytes() if path.exists() else b""
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


class RunDir:
    """One run's folder; make it with ``RunDir.create`` or reopen it with ``RunDir.open``."""

    def __init__(self, path: str | Path, config: TrainConfig):
        self.path = Path(path)
        self.config = config
        self.checkpoints = CheckpointManager(self.checkpoint_dir, keep_last=config.keep_last)
        self.lock = RunLock(self.path)
        self._appended_to: set[Path] = set()

    @classmethod
    def create(cls, path: str | Path, config: TrainConfig) -> RunDir:
        """Start a run in ``path`` (created if needed, and not already a run's folder); the
        returned RunDir holds the folder's writer lock (``run.lock``)."""
        path = Path(path)
        config.validate()
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        run = cls(path, config)
        run.lock.acquire()
        if (path / "config.toml").exists() or (path / "manifest.json").exists():
            run.lock.release()
            raise ValueError(f"{path} already holds a run; reopen it with RunDir.open to resume, "
                             "or choose a new folder")
        atomic_write_text(path / "config.toml", config.to_toml())
        run._write_manifest({"name": path.name, "status": "running", "created": now_iso(),
                             "created_unix": time.time(), "seed": config.seed,
                             "command": sys.argv, "environment": environment()})
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Reopen an existing run folder (to resume or inspect it)."""
        path = Path(path)
        for name in ("config.toml", "manifest.json"):
            if not (path / name).is_file():
                raise ValueError(f"{path} is not an alphagrad run folder (no {name})")
        return cls(path, TrainConfig.from_toml(path / "config.toml"))

    # ---- paths ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def samples_path(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    # ---- records -------------------------------------------------------------------------

    @property
    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.manifest_path} is not valid JSON ({e.msg})") from None

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, default=_json_default) + "\n"
        atomic_write_text(self.manifest_path, text)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into manifest.json (rewritten atomically); return the new manifest."""
        manifest = self.manifest | fields
        self._write_manifest(manifest)
        return manifest

    def finish(self, status: str = "completed", final_metrics: dict | None = None,
               **fields: Any) -> dict[str, Any]:
        """Record the end of the run: status, end time, duration, final metrics, ``fields``."""
        started = self.manifest.get("created_unix", time.time())
        return self.update_manifest(status=status, finished=now_iso(),
                                    duration_seconds=round(time.time() - started, 3),
                                    final_metrics=final_metrics or {}, **fields)

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one record, e.g. ``{"step": 100, "split": "val", "loss": 1.9}``."""
        self._append(self.metrics_path, [record])

    def _append(self, path: Path, records: list[dict]) -> None:
        _append_lines(path, records, first=path not in self._appended_to)
        self._appended_to.add(path)

    def read_metrics(self) -> list[dict[str, Any]]:
        return _read_lines(self.metrics_path)

    def set_aside_after(self, step: int) -> Path | None:
        """Start the history again after ``step`` (a resume from an older checkpoint): move the
        checkpoint files, metric records and samples of later steps into ``superseded-<time>/``,
        so the new history neither mixes with them nor loses them. Returns that folder, or None
        if nothing came later."""
        later = [p for p in self.checkpoints.steps() if int(p.stem.removeprefix("step-")) > step]
        best = self.checkpoints.best()
        if best is not None and (_checkpoint_step(best) or 0) > step:
            later.append(best)
        records = {path: _read_lines(path) for path in (self.metrics_path, self.samples_path)}
        if not later and not any(r.get("step", 0) > step for rs in records.values() for r in rs):
            return None
        folder = make_run_folder(self.path, f"superseded-{time.strftime('%Y%m%d-%H%M%S')}")
        (folder / "checkpoints").mkdir()
        for path in later:
            os.replace(path, folder / "checkpoints" / path.name)
        for path, rs in records.items():  # the copy first: a crash between leaves both
            moved = [r for r in rs if r.get("step", 0) > step]
            if moved:
                atomic_write_text(folder / path.name, _json_lines(moved))
                atomic_write_text(path, _json_lines([r for r in rs if r.get("step", 0) <= step]))
                self._appended_to.add(path)
        return folder

    def restore_best(self, best_step: int | None) -> bool:
        """Make best.ckpt the checkpoint of ``best_step`` (as a run's last checkpoint records it)
        if a kill between writing that step's file and copying it left an older best.ckpt.
        Returns whether best.ckpt changed."""
        best, source = self.checkpoints.best(), self.checkpoints.path_for(best_step or 0)
        if best_step is None or not source.is_file() \
                or (best is not None and _checkpoint_step(best) == best_step):
            return False
        with open(source, "rb") as src, atomic_writer(self.checkpoints.best_path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return True

    def repair(self) -> list[Path]:
        """Undo what a killed writer left: its temporary files, and a best.ckpt older than the
        best step the latest checkpoint records. Returns the files removed; does nothing while
        another process holds the folder's lock (it is alive and writing)."""
        try:
            self.lock.acquire()
        except RunInUse:
            return []
        try:
            removed = self.remove_leftovers()
            latest = self.checkpoints.latest()
            if latest is not None:
                with contextlib.suppress(CheckpointError):
                    self.restore_best((checkpoint_info(latest)["train_state"] or {})
                                      .get("best_step"))
            return removed
        finally:
            self.lock.release()

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files of writes a killed process never finished (call only
        while holding the lock: a live writer's temporary file looks the same)."""
        return [*remove_temporary_files(self.path), *remove_temporary_files(self.checkpoint_dir)]

    def record_resume(self, step: int, checkpoint: Path, changes: dict[str, list],
                      superseded: Path | None) -> None:
        """Note a resume in the manifest (``resumes``); setting changes also go to
        metrics.jsonl (``{"kind": "resume", ...}``) and config.toml."""
        entry = {"step": step, "checkpoint": checkpoint.name, "time": now_iso(),
                 "changes": changes, **({"superseded": superseded.name} if superseded else {})}
        self.update_manifest(resumes=[*self.manifest.get("resumes", []), entry])
        if changes:
            self.log_metrics({"kind": "resume", "step": step, "changes": changes})
            atomic_write_text(self.config_path, self.config.to_toml())

    def log_samples(self, samples: list[dict[str, Any]]) -> None:
        """Append generated samples, e.g. ``[{"step": 500, "prompt": "def ", "text": ...}]``."""
        self._append(self.samples_path, list(samples))

    def read_samples(self) -> list[dict[str, Any]]:
        return _read_lines(self.samples_path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

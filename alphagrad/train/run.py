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

import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad import __version__
from alphagrad.tensor import get_num_threads
from alphagrad.train.atomic import atomic_write_text
from alphagrad.train.checkpoint import CheckpointManager
from alphagrad.train.config import TrainConfig
from alphagrad.train.runlock import RunLock


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
    text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
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

    def truncate_metrics(self, after_step: int) -> None:
        """Drop the records of steps after ``after_step``: a resumed run logs those steps again."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        atomic_write_text(self.metrics_path,
                          "".join(json.dumps(r, default=_json_default) + "\n" for r in kept))
        self._appended_to.add(self.metrics_path)

    def log_samples(self, samples: list[dict[str, Any]]) -> None:
        """Append generated samples, e.g. ``[{"step": 500, "prompt": "def ", "text": ...}]``."""
        self._append(self.samples_path, list(samples))

    def read_samples(self) -> list[dict[str, Any]]:
        return _read_lines(self.samples_path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

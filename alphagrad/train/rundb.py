"""The runs database: an SQLite index of the run folders under a root, for ``alphagrad runs``.

    db = RunDB("runs")                     # runs/alphagrad.db
    run_id = db.register_run(run)          # a RunDir
    db.log_metrics(run_id, [{"step": 10, "split": "train", "loss": 2.31}])
    db.list_runs()

The folders are the truth and the database only an index: ``sync()`` rebuilds it from them at
any time. Several processes may write at once (WAL journal, a busy timeout, one short
transaction per call). A database that is busy for longer than the timeout raises RunDBError,
a damaged one RunDBDamaged, each naming the file; a training writes through ``RunDBWriter``,
which never lets the index stop a run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import numbers
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from alphagrad.train.checkpoint import CheckpointError, checkpoint_info
from alphagrad.train.run import RunDir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL UNIQUE, status TEXT,
    created TEXT, finished TEXT, config TEXT, final_metrics TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, step INTEGER NOT NULL,
    split TEXT NOT NULL, key TEXT NOT NULL, value REAL,
    PRIMARY KEY (run_id, split, key, step)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, step INTEGER,
    path TEXT NOT NULL, is_best INTEGER NOT NULL DEFAULT 0, val_loss REAL,
    PRIMARY KEY (run_id, path));
"""
_NOT_METRICS = {"step", "split", "kind", "time"}
DB_NAME = "alphagrad.db"


class RunDBError(ValueError):
    """The runs database cannot be used: busy past the timeout, or unreadable."""


class RunDBDamaged(RunDBError):
    """The runs database file is damaged; ``RunDB.set_aside`` and ``sync`` rebuild it."""


class RunDBWarning(UserWarning):
    """The runs database could not be updated during training (the run itself goes on)."""


def _sqlite_errors(method):
    """Turn sqlite3's errors into RunDBError/RunDBDamaged naming the database file."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise self._error(e) from None

    return wrapper


def _metric_rows(run_id: int, records: Iterable[dict]) -> list[tuple]:
    """One row per numeric value; the series is the record's ``split`` (or ``kind``), default
    ``"train"``. Records without an integer ``step`` are not metrics and are skipped."""
    rows = []
    for record in records:
        step = record.get("step")
        if not isinstance(step, numbers.Integral) or isinstance(step, bool):
            continue
        split = str(record.get("split", record.get("kind", "train")))
        for key, value in record.items():
            if key not in _NOT_METRICS and isinstance(value, numbers.Real) \
                    and not isinstance(value, bool):
                value = float(value)
                rows.append((run_id, int(step), split, key, value if math.isfinite(value) else None))
    return rows


class RunDB:
    """The index at ``<root>/alphagrad.db`` (created on first use)."""

    def __init__(self, root: str | Path = "runs", timeout: float = 30.0):
        self.root, self.timeout = Path(root), timeout
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DB_NAME
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._setup()
        except RunDBError:
            self._conn.close()
            raise

    @_sqlite_errors
    def _setup(self) -> None:
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def _error(self, error: sqlite3.Error) -> RunDBError:
        name, text = getattr(error, "sqlite_errorname", ""), str(error)
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in text \
                or "not a database" in text:
            return RunDBDamaged(f"the runs database {self.path} is damaged ({text}); rebuild it "
                                f"from the run folders with: alphagrad runs sync --runs-root "
                                f"{self.root}")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            return RunDBError(f"the runs database {self.path} is busy: another process has held "
                              f"it for over {self.timeout:g}s; try again")
        return RunDBError(f"the runs database {self.path}: {text}")

    @staticmethod
    def set_aside(root: str | Path) -> Path:
        """Move a damaged ``root/alphagrad.db`` (and its journal files) out of the way, to
        ``alphagrad.db.damaged-<time>``; returns where it went. The next RunDB starts afresh."""
        path = Path(root) / DB_NAME
        moved = path.with_name(f"{DB_NAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):  # a stale journal must not replay into the new file
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").rename(f"{moved}{suffix}")
        return moved

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunDB:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction that takes the write lock at once (waiting up to the timeout)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _key(self, path: str | Path) -> str:
        """How a folder is stored: relative to the root when inside it, so the root can move."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _run_id(self, run: int | str | Path | RunDir) -> int:
        if isinstance(run, int):
            return run
        return self.get_run(run.path if isinstance(run, RunDir) else run)["id"]

    # ---- writing ---------------------------------------------------------------------------

    @_sqlite_errors
    def register_run(self, run: RunDir) -> int:
        """Add or refresh a run from its folder (config and manifest); return its id."""
        manifest = run.manifest
        values = (run.name, self._key(run.path), manifest.get("status"), manifest.get("created"),
                  manifest.get("finished"), json.dumps(run.config.to_dict()),
                  json.dumps(manifest.get("final_metrics") or {}))
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (name, path, status, created, finished, config, final_metrics) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
                "name = excluded.name, status = excluded.status, created = excluded.created, "
                "finished = excluded.finished, config = excluded.config, "
                "final_metrics = excluded.final_metrics", values)
            return conn.execute("SELECT id FROM runs WHERE path = ?", values[1:2]).fetchone()[0]

    @_sqlite_errors
    def log_metrics(self, run: int | str | Path | RunDir, records: Iterable[dict]) -> int:
        """Insert metric records (as in metrics.jsonl) in one transaction; re-inserting the same
        (step, split, key) replaces it. Returns the number of values stored."""
        rows = _metric_rows(self._run_id(run), records)
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    @_sqlite_errors
    def add_checkpoint(self, run: int | str | Path | RunDir, step: int | None, path: str | Path,
                       is_best: bool = False, val_loss: float | None = None) -> None:
        """Record a checkpoint file; a new best unmarks the old one, and rows whose file has
        been pruned are dropped."""
        run_id = self._run_id(run)
        with self._write() as conn:
            stored = conn.execute("SELECT path FROM checkpoints WHERE run_id = ?", (run_id,))
            gone = [(run_id, p) for (p,) in stored if not (self.root / p).exists()]
            conn.executemany("DELETE FROM checkpoints WHERE run_id = ? AND path = ?", gone)
            if is_best:
                conn.execute("UPDATE checkpoints SET is_best = 0 WHERE run_id = ?", (run_id,))
            conn.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                         (run_id, step, self._key(path), int(is_best), val_loss))

    @_sqlite_errors
    def finish_run(self, run: int | str | Path | RunDir, status: str = "completed",
                   final_metrics: dict | None = None, finished: str | None = None) -> None:
        run_id = self._run_id(run)
        with self._write() as conn:
            conn.execute("UPDATE runs SET status = ?, final_metrics = ?, finished = ? WHERE id = ?",
                         (status, json.dumps(final_metrics or {}), finished, run_id))

    # ---- reading ---------------------------------------------------------------------------

    def _run_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        run = dict(row)
        run["path"] = str(self.root / run["path"])  # an absolute stored path stays as it is
        run["config"] = json.loads(run["config"] or "{}")
        run["final_metrics"] = json.loads(run["final_metrics"] or "{}")
        return run

    @_sqlite_errors
    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, with its last logged step."""
        rows = self._conn.execute(
            "SELECT runs.*, (SELECT MAX(step) FROM metrics WHERE run_id = runs.id) AS last_step "
            "FROM runs ORDER BY created, id")
        return [self._run_dict(row) for row in rows]

    @_sqlite_errors
    def get_run(self, name_or_path: str | Path) -> dict[str, Any]:
        """A run by folder path, or by folder name when that is unambiguous."""
        query = "SELECT runs.*, (SELECT MAX(step) FROM metrics WHERE run_id = runs.id) " \
                "AS last_step FROM runs WHERE "
        rows = self._conn.execute(query + "path = ?", (self._key(name_or_path),)).fetchall()
        if not rows:
            rows = self._conn.execute(query + "name = ?", (str(name_or_path),)).fetchall()
        if len(rows) > 1:
            raise ValueError(f"several runs are named {str(name_or_path)!r}: "
                             f"{', '.join(row['path'] for row in rows)}; give the path")
        if not rows:
            raise ValueError(f"no run {str(name_or_path)!r} in {self.path} (try sync)")
        return self._run_dict(rows[0])

    @_sqlite_errors
    def metrics(self, run: int | str | Path | RunDir, key: str | None = None,
                split: str | None = None) -> list[dict[str, Any]]:
        """A run's metric values as ``{"step", "split", "key", "value"}``, by series then step."""
        rows = self._conn.execute(
            "SELECT step, split, key, value FROM metrics WHERE run_id = ? "
            "AND (? IS NULL OR key = ?) AND (? IS NULL OR split = ?) ORDER BY split, key, step",
            (self._run_id(run), key, key, split, split))
        return [dict(row) for row in rows]

    @_sqlite_errors
    def checkpoints(self, run: int | str | Path | RunDir) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT step, path, is_best, val_loss FROM checkpoints WHERE run_id = ? "
            "ORDER BY step, is_best, path", (self._run_id(run),))
        return [dict(row, path=str(self.root / row["path"]), is_best=bool(row["is_best"]))
                for row in rows]

    # ---- rebuilding ------------------------------------------------------------------------

    @_sqlite_errors
    def sync(self, folders: Iterable[str | Path] = ()) -> dict[str, Any]:
        """Rebuild the index from every run folder under the root (config.toml, manifest.json,
        metrics.jsonl, checkpoints/), from the runs it already lists outside the root (trained
        with ``--out`` elsewhere), and from the runs in ``folders``; rows of folders that are
        gone are removed. A folder no process is writing to is repaired first
        (``RunDir.repair``: leftovers of killed writes). Returns counts, the folders that could
        not be read and the leftover files removed."""
        folders = [Path(folder) for folder in folders]
        for folder in folders:
            if not folder.is_dir():
                raise ValueError(f"{folder} is not a folder of runs")
        stored = self._conn.execute("SELECT id, path FROM runs").fetchall()
        outside = [Path(path) for _, path in stored if Path(path).is_absolute()]
        manifests = [m for root in (self.root, *folders, *outside) if root.is_dir()
                     for m in sorted(root.rglob("manifest.json"))]
        seen, done, skipped, removed = set(), set(), [], []
        counts = {"runs": 0, "metrics": 0, "checkpoints": 0}
        for manifest in manifests:
            folder = manifest.parent
            if not (folder / "config.toml").is_file() or folder.resolve() in done:
                continue
            done.add(folder.resolve())
            try:
                run = RunDir.open(folder)
                removed += run.repair()
                run_id, n_metrics, n_checkpoints = self.sync_run(run)
            except RunDBError:
                raise
            except (ValueError, OSError) as e:
                skipped.append({"path": str(folder), "error": str(e)})
                continue
            seen.add(run_id)
            counts["runs"] += 1
            counts["metrics"] += n_metrics
            counts["checkpoints"] += n_checkpoints
        with self._write() as conn:
            gone = [(run_id,) for run_id, path in stored
                    if run_id not in seen and not (self.root / path / "manifest.json").exists()]
            conn.executemany("DELETE FROM runs WHERE id = ?", gone)
        return counts | {"removed": len(gone), "skipped": skipped, "leftovers": removed}

    @_sqlite_errors
    def sync_run(self, run: RunDir) -> tuple[int, int, int]:
        """Replace one run's rows with what its folder holds; returns (run id, metric values,
        checkpoints)."""
        rows = _metric_rows(0, run.read_metrics())
        found = self._checkpoint_rows(run)
        run_id = self.register_run(run)
        with self._write() as conn:
            for table in ("metrics", "checkpoints"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
                             [(run_id, *row[1:]) for row in rows])
            conn.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)",
                             [(run_id, *row) for row in found])
        return run_id, len(rows), len(found)

    def _checkpoint_rows(self, run: RunDir) -> list[tuple]:
        """(step, path, is_best, val_loss) for each readable checkpoint of a run."""
        rows = []
        for path in [*run.checkpoints.steps(), run.checkpoints.best()]:
            if path is None:
                continue
            try:
                info = checkpoint_info(path)
            except CheckpointError:
                continue
            state, metrics = info["train_state"] or {}, info["metrics"]
            step, val_loss = state.get("step"), metrics.get("val_loss")
            rows.append((step if isinstance(step, int) else None, self._key(path),
                         int(path == run.checkpoints.best_path),
                         val_loss if isinstance(val_loss, float) else None))
        return rows


class RunDBWriter:
    """A training's writes to the runs database, which never stop the training.

    Same writing methods as RunDB. When the database is busy past ``timeout`` or damaged, it
    warns once (RunDBWarning) and stops writing; every ``retry_after`` seconds, and at
    ``finish_run``, it tries again by re-reading the run's folder (``sync_run``), which by then
    holds everything the missed writes would have added.
    """

    def __init__(self, root: str | Path, timeout: float = 1.0, retry_after: float = 30.0):
        self.root, self.timeout, self.retry_after = Path(root), timeout, retry_after
        self._db: RunDB | None = None
        self._behind: RunDir | None = None  # a run whose rows missed writes
        self._next_try = 0.0
        self._warned = False

    def register_run(self, run: RunDir) -> None:
        self._write(run, lambda db: db.register_run(run))

    def sync_run(self, run: RunDir) -> None:
        self._write(run, lambda db: db.sync_run(run))

    def log_metrics(self, run: RunDir, records: Iterable[dict]) -> None:
        self._write(run, lambda db: db.log_metrics(run, records))

    def add_checkpoint(self, run: RunDir, step: int | None, path: str | Path,
                       is_best: bool = False, val_loss: float | None = None) -> None:
        self._write(run, lambda db: db.add_checkpoint(run, step, path, is_best, val_loss))

    def finish_run(self, run: RunDir, status: str = "completed",
                   final_metrics: dict | None = None, finished: str | None = None) -> None:
        """The last write of a run: tried now even if the last attempt was recent."""
        self._next_try = 0.0
        self._write(run, lambda db: db.finish_run(run, status, final_metrics, finished))
        if self._behind is not None:
            warnings.warn(f"the runs database {self.root / DB_NAME} could not be updated; "
                          f"`alphagrad runs sync --runs-root {self.root}` rebuilds it from the "
                          "run folders", RunDBWarning, stacklevel=2)
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _write(self, run: RunDir, action: Callable[[RunDB], Any]) -> None:
        if self._behind is not None and time.monotonic() < self._next_try:
            return
        try:
            if self._db is None:
                self._db = RunDB(self.root, timeout=self.timeout)
            if self._behind is not None:
                self._db.sync_run(self._behind)  # the folder holds what was missed, and more
                self._behind = None
            else:
                action(self._db)
        except (RunDBError, OSError) as e:
            self.close()
            self._behind, self._next_try = run, time.monotonic() + self.retry_after
            if not self._warned:
                self._warned = True
                warnings.warn(f"{e}; training goes on, and the index catches up from the run "
                              "folder when it can", RunDBWarning, stacklevel=3)

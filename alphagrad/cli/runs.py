"""``alphagrad runs list|show|compare|sync``: the runs database, read."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from alphagrad.cli.chart import line_chart
from alphagrad.cli.display import cell, table
from alphagrad.cli.options import runs_root_option
from alphagrad.train import RunDB, RunDir
from alphagrad.train.progress import duration
from alphagrad.train.rundb import DB_NAME, RunDBDamaged

EVAL_COLUMNS = {"train_loss": "train loss", "val_loss": "val loss",
                "val_perplexity": "val perplexity", "val_bits_per_byte": "val bits/byte"}


def open_db(runs_root: Path) -> RunDB:
    if not (runs_root / DB_NAME).is_file():
        raise FileNotFoundError(f"no runs database in {runs_root}/ (train a model first, or "
                                "point --runs-root at the folder of your runs)")
    return RunDB(runs_root)


def eval_rows(db: RunDB, run: dict[str, Any]) -> dict[int, dict[str, float]]:
    """``{step: {key: value}}`` of a run's evaluations."""
    rows: dict[int, dict[str, float]] = defaultdict(dict)
    for m in db.metrics(run["id"], split="eval"):
        rows[m["step"]][m["key"]] = m["value"]
    return dict(sorted(rows.items()))


def series(db: RunDB, run: dict[str, Any], split: str, key: str) -> list[tuple[float, float]]:
    return [(m["step"], m["value"]) for m in db.metrics(run["id"], key=key, split=split)]


@click.group()
def runs() -> None:
    """List, inspect and compare training runs (from RUNS_ROOT/alphagrad.db)."""


@runs.command("list")
@runs_root_option
def list_runs(runs_root: Path) -> None:
    """Every run, oldest first.

    \b
    Example:
      alphagrad runs list --runs-root runs
    """
    with open_db(runs_root) as db:
        rows = [[r["name"], r["status"], r["config"].get("preset") or "-", r["last_step"],
                 r["final_metrics"].get("best_val_loss"), r["created"], r["path"]]
                for r in db.list_runs()]
    if not rows:
        click.echo(f"no runs in {runs_root}/")
        return
    click.echo(table(["run", "status", "preset", "step", "best val loss", "created", "path"],
                     rows))


def _timing(folder: Path) -> str | None:
    """When and how long a run trained, and on what, from its manifest (if still there)."""
    try:
        manifest = RunDir.open(folder).manifest
    except (OSError, ValueError):
        return None
    env = manifest.get("environment", {})
    took = manifest.get("duration_seconds")
    return (f"created {manifest.get('created')}"
            + (f", took {duration(took)}" if took is not None else "")
            + f", {manifest.get('num_threads', env.get('num_threads'))} threads on "
              f"{env.get('cpu', 'an unknown CPU')}")


@runs.command()
@click.argument("run")
@runs_root_option
@click.option("--width", type=click.IntRange(min=10), default=60, show_default=True)
@click.option("--height", type=click.IntRange(min=3), default=15, show_default=True)
def show(run: str, runs_root: Path, width: int, height: int) -> None:
    """One run: its settings, its evaluations and a chart of train and val loss.

    RUN is a run's folder name or path.

    \b
    Example:
      alphagrad runs show 20260101-120000
    """
    with open_db(runs_root) as db:
        record = db.get_run(run)
        evals = eval_rows(db, record)
        chart = line_chart({"train loss": series(db, record, "step", "loss"),
                            "val loss": series(db, record, "eval", "val_loss")}, width, height)
        checkpoints = db.checkpoints(record["id"])
    click.echo(f"run {record['name']} ({record['status']}), {record['path']}")
    if record["final_metrics"].get("reason"):
        click.echo(f"stopped by: {record['final_metrics']['reason']}")
    click.echo(_timing(Path(record["path"])) or f"created {record['created']}")
    config = ", ".join(f"{k}={v}" for k, v in record["config"].items() if v is not None)
    click.echo("\n" + textwrap.fill(f"config: {config}", 100, subsequent_indent="  "))
    columns = [k for k in EVAL_COLUMNS if any(k in row for row in evals.values())]
    click.echo("\n" + table(["step"] + [EVAL_COLUMNS[k] for k in columns],
                            [[step] + [row.get(k) for k in columns]
                             for step, row in evals.items()]))
    click.echo("\n" + chart)
    if checkpoints:
        click.echo("\ncheckpoints: " + ", ".join(
            Path(c["path"]).name + (" (best)" if c["is_best"] else "") for c in checkpoints))


def _summary(db: RunDB, record: dict[str, Any]) -> dict[str, Any]:
    evals = eval_rows(db, record)
    last = evals[max(evals)] if evals else {}
    return {"status": record["status"], "step": record["last_step"],
            "last val loss": last.get("val_loss"),
            "best val loss": record["final_metrics"].get("best_val_loss")}


@runs.command()
@click.argument("first")
@click.argument("second")
@runs_root_option
def compare(first: str, second: str, runs_root: Path) -> None:
    """Two runs side by side: the settings that differ, their results, their val losses.

    \b
    Example:
      alphagrad runs compare 20260101-120000 20260102-093000
    """
    with open_db(runs_root) as db:
        a, b = db.get_run(first), db.get_run(second)
        summaries = _summary(db, a), _summary(db, b)
        chart = line_chart({f"{a['name']} val loss": series(db, a, "eval", "val_loss"),
                            f"{b['name']} val loss": series(db, b, "eval", "val_loss")})
    keys = sorted(set(a["config"]) | set(b["config"]))
    differ = [[k, str(a["config"].get(k)), str(b["config"].get(k))] for k in keys
              if a["config"].get(k) != b["config"].get(k)]
    rows = [[k, cell(summaries[0][k]), cell(summaries[1][k])] for k in summaries[0]]
    click.echo(table(["", a["name"], b["name"]], rows + differ))
    click.echo("\n" + chart)


@runs.command()
@click.argument("folders", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@runs_root_option
def sync(folders: tuple[Path, ...], runs_root: Path) -> None:
    """Rebuild the database from the run folders (it is only an index of them): those under
    the runs root, those it already lists elsewhere (trained with --out outside the root) and
    those in FOLDERS. A damaged database is moved aside first.

    \b
    Examples:
      alphagrad runs sync --runs-root runs
      alphagrad runs sync ~/experiments/exp1     # add runs trained with --out elsewhere
    """
    try:
        with RunDB(runs_root) as db:
            counts = db.sync(folders)
    except RunDBDamaged:
        moved = RunDB.set_aside(runs_root)
        click.echo(f"the runs database {runs_root / DB_NAME} was damaged; moved it to {moved} "
                   "and rebuilt it from the run folders (name the runs you trained with --out "
                   "outside the root: alphagrad runs sync FOLDER...)", err=True)
        with RunDB(runs_root) as db:
            counts = db.sync(folders)
    click.echo(f"{counts['runs']} runs, {counts['metrics']} metric values, "
               f"{counts['checkpoints']} checkpoints indexed; {counts['removed']} gone runs "
               f"removed")
    if counts["leftovers"]:
        click.echo(f"removed {len(counts['leftovers'])} leftover temporary files of killed "
                   "writes")
    for skipped in counts["skipped"]:
        click.echo(f"skipped {skipped['path']}: {skipped['error']}", err=True)

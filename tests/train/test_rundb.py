import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from holders import DatabaseHolder

from alphagrad.train.config import TrainConfig
from alphagrad.train.run import RunDir
from alphagrad.train.rundb import RunDB, RunDBDamaged, RunDBError


def make_run(root, name, n_steps=3, checkpoints=()):
    run = RunDir.create(root / name, TrainConfig(n_layer=2, seed=len(name)))
    for step in range(n_steps):
        run.log_metrics({"step": step * 10, "split": "train", "loss": 4.0 - step, "lr": 1e-3,
                         "time": 1.5, "note": "text is not a metric"})
    run.log_metrics({"step": 20, "split": "val", "loss": np.float32(2.5)})
    for step, val_loss in checkpoints:
        run.checkpoints.save(step, is_best=val_loss is not None, model_kind="gpt",
                             model_config={}, model_state={"w": np.zeros(2, np.float32)},
                             train_state={"step": step},
                             metrics={} if val_loss is None else {"val_loss": val_loss})
    return run


def test_register_log_and_query(tmp_path):
    db = RunDB(tmp_path)
    run = make_run(tmp_path, "alpha")
    run_id = db.register_run(run)
    assert db.register_run(run) == run_id  # idempotent
    assert db.log_metrics(run_id, run.read_metrics()) == 7
    assert db.log_metrics(run, run.read_metrics()) == 7  # re-insert replaces, adds nothing
    train_loss = db.metrics("alpha", key="loss", split="train")
    assert [(m["step"], m["value"]) for m in train_loss] == [(0, 4.0), (10, 3.0), (20, 2.0)]
    assert len(db.metrics(run_id)) == 7 and db.metrics(run_id, split="val")[0]["value"] == 2.5
    listed = db.list_runs()
    assert [r["name"] for r in listed] == ["alpha"] and listed[0]["last_step"] == 20
    assert listed[0]["config"]["n_layer"] == 2 and listed[0]["status"] == "running"
    assert db.get_run(run.path)["id"] == run_id == db.get_run("alpha")["id"]
    db.finish_run(run_id, final_metrics={"val_loss": 2.5}, finished="2030-01-01T00:00:00")
    assert db.get_run("alpha")["final_metrics"] == {"val_loss": 2.5}
    assert db.get_run("alpha")["status"] == "completed"
    with pytest.raises(ValueError, match="no run 'beta'"):
        db.get_run("beta")
    mode = sqlite3.connect(db.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_checkpoints_follow_the_folder(tmp_path):
    db = RunDB(tmp_path)
    run = make_run(tmp_path, "r", checkpoints=[(100, None), (200, 1.5)])
    db.register_run(run)
    for path in run.checkpoints.steps():
        db.add_checkpoint(run, int(path.stem.split("-")[1]), path)
    db.add_checkpoint(run, 200, run.checkpoints.best(), is_best=True, val_loss=1.5)
    rows = db.checkpoints(run)
    assert [(r["step"], r["is_best"]) for r in rows] == [(100, False), (200, False), (200, True)]
    run.checkpoints.path_for(100).unlink()
    db.add_checkpoint(run, 300, run.checkpoints.best(), is_best=True, val_loss=1.0)
    rows = db.checkpoints(run)
    assert [(r["step"], r["is_best"], r["val_loss"]) for r in rows] == [(200, False, None),
                                                                       (300, True, 1.0)]


def test_sync_rebuilds_from_the_folders(tmp_path):
    make_run(tmp_path, "a", checkpoints=[(100, 2.0), (200, None)])
    nested = make_run(tmp_path / "group", "b", n_steps=5)
    nested.finish(final_metrics={"val_loss": 1.25})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/config.toml").write_text("n_layer = 'x'\n")
    (tmp_path / "broken/manifest.json").write_text("{}")
    db = RunDB(tmp_path)
    report = db.sync()
    assert report["runs"] == 2 and report["metrics"] == 7 + 11 and report["checkpoints"] == 3
    assert [s["path"] for s in report["skipped"]] == [str(tmp_path / "broken")]
    assert sorted(r["name"] for r in db.list_runs()) == ["a", "b"]
    b = db.get_run(tmp_path / "group" / "b")
    assert b["status"] == "completed" and b["final_metrics"] == {"val_loss": 1.25}
    best = [c for c in db.checkpoints("a") if c["is_best"]]
    assert [(c["step"], c["val_loss"]) for c in best] == [(100, 2.0)]
    first = {(m["step"], m["split"], m["key"], m["value"]) for m in db.metrics("a")}
    assert db.sync()["runs"] == 2  # again: same contents
    assert {(m["step"], m["split"], m["key"], m["value"]) for m in db.metrics("a")} == first
    for path in sorted((tmp_path / "a").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "a").rmdir()
    assert db.sync()["removed"] == 1
    assert [r["name"] for r in db.list_runs()] == ["b"]
    db.close()
    fresh = tmp_path / "alphagrad.db"
    fresh.unlink()
    assert RunDB(tmp_path).sync()["runs"] == 1



def test_sync_keeps_refreshing_runs_outside_the_root_and_adds_named_folders(tmp_path):
    root, elsewhere = tmp_path / "runs", tmp_path / "experiments"
    make_run(root, "inside")
    outside = make_run(elsewhere, "exp", n_steps=2)
    db = RunDB(root)
    db.register_run(outside)  # as a training with --out outside the root does
    outside.log_metrics({"step": 30, "split": "train", "loss": 1.0})
    outside.finish(final_metrics={"val_loss": 0.9})
    assert db.sync()["runs"] == 2  # the folder under the root and the one it already listed
    exp = db.get_run(outside.path)
    assert exp["status"] == "completed" and exp["last_step"] == 30
    assert exp["path"] == str(outside.path.resolve())
    db.close()
    (root / "alphagrad.db").unlink()  # a rebuilt index knows only the root...
    db = RunDB(root)
    assert [r["name"] for r in db.list_runs()] == [] and db.sync()["runs"] == 1
    assert db.sync([elsewhere])["runs"] == 2  # ...until the folders elsewhere are named
    assert db.get_run("exp")["last_step"] == 30 and db.sync()["runs"] == 2
    for path in sorted(outside.path.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    outside.path.rmdir()
    assert db.sync()["removed"] == 1 and [r["name"] for r in db.list_runs()] == ["inside"]
    with pytest.raises(ValueError, match="is not a folder of runs"):
        db.sync([tmp_path / "missing"])


def _writer(root, worker, batches, barrier):
    db = RunDB(root)
    own = db.register_run(RunDir.open(f"{root}/run{worker}"))
    shared = db.get_run("shared")["id"]
    barrier.wait()
    for b in range(batches):
        records = [{"step": b * 10 + i, "split": f"w{worker}", "loss": float(i)}
                   for i in range(10)]
        db.log_metrics(own, records)
        db.log_metrics(shared, records)
    db.close()


def test_two_processes_write_at_once(tmp_path):
    for name in ("run0", "run1", "shared"):
        RunDir.create(tmp_path / name, TrainConfig())
    db = RunDB(tmp_path)
    db.register_run(RunDir.open(tmp_path / "shared"))
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=_writer, args=(str(tmp_path), w, 30, barrier))
               for w in range(2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0]
    assert len(db.metrics("run0")) == len(db.metrics("run1")) == 300
    assert len(db.metrics("shared")) == 600
    assert db._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _damage(db_path, how):
    if how == "garbage":
        db_path.write_bytes(b"not a database, " * 512)
    else:  # half of a real database: the header is fine, the pages it points to are gone
        data = db_path.read_bytes()
        db_path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_database_gets_a_clear_error_and_sync_rebuilds_it(tmp_path, how):
    for name in ("a", "b"):
        make_run(tmp_path, name, n_steps=40, checkpoints=[(100, 2.0)])
    with RunDB(tmp_path) as db:
        db.sync()
        before = db.list_runs()
    db_path = tmp_path / "alphagrad.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    _damage(db_path, how)
    with pytest.raises(RunDBDamaged, match=rf"the runs database {db_path} is damaged .*"
                                           rf"alphagrad runs sync --runs-root {tmp_path}"), \
            RunDB(tmp_path) as db:
        db.list_runs()
    moved = RunDB.set_aside(tmp_path)
    assert moved.name.startswith("alphagrad.db.damaged-") and not db_path.exists()
    with RunDB(tmp_path) as db:
        assert db.sync()["runs"] == 2
        assert [(r["name"], r["last_step"]) for r in db.list_runs()] == \
            [(r["name"], r["last_step"]) for r in before]


def test_a_busy_database_gets_a_clear_error(tmp_path):
    make_run(tmp_path, "a")
    RunDB(tmp_path).close()
    with DatabaseHolder(tmp_path / "alphagrad.db"), \
            pytest.raises(RunDBError, match="is busy: another process has held it for over "
                                            "0.2s; try again"):
        RunDB(tmp_path, timeout=0.2).register_run(RunDir.open(tmp_path / "a"))

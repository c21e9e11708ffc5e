"""The runs API and its live stream, against run folders written by the real trainer."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from alphagrad.train import TrainConfig, train


def test_runs_table_and_one_run(live, trained_run):
    runs = httpx.get(live.url + "/api/runs").json()["runs"]
    row = next(r for r in runs if r["id"] == "tiny")
    metrics = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().split("\n")
               if line]
    evals = [r for r in metrics if r["kind"] == "eval"]
    assert row["status"] == "completed" and row["step"] == 40 and row["max_iters"] == 40
    assert row["val_loss"] == evals[-1]["val_loss"]
    assert row["best_val_loss"] == min(r["val_loss"] for r in evals)
    detail = httpx.get(live.url + "/api/runs/tiny").json()
    assert detail["config"]["n_embd"] == 32 and detail["evaluations"] == evals
    files = {c["file"] for c in detail["checkpoints"]}
    assert {"step-00000020.ckpt", "step-00000040.ckpt", "best.ckpt"} <= files
    best = next(c for c in detail["checkpoints"] if c["is_best"])
    assert best["val_loss"] == row["best_val_loss"]  # from the runs database
    page = httpx.get(live.url + "/api/runs/tiny/metrics", params={"after": 30}).json()
    assert page["records"] == [r for r in metrics if r["step"] > 30]
    missing = httpx.get(live.url + "/api/runs/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def _events(response):
    """(event, data) pairs of a server-sent event stream."""
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


def test_the_live_stream_sees_a_run_started_after_it_connected(live, trained_run, runs_root):
    data = TrainConfig.from_toml(trained_run / "config.toml").data_dir
    config = TrainConfig(data_dir=data, out_dir=str(runs_root / "later"), n_layer=1, n_head=2,
                         n_embd=16, block_size=16, batch_size=4, max_iters=6, eval_interval=3,
                         eval_iters=1, warmup_iters=1, log_interval=2, seed=1)
    connected, seen = threading.Event(), []

    def listen() -> None:  # the trainer needs the main thread (it handles signals)
        with httpx.Client(timeout=20) as http, http.stream("GET", live.url + "/api/runs/live") as r:
            events = _events(r)
            seen.append(next(events))
            connected.set()
            for name, payload in events:
                if payload.get("id") == "later":
                    seen.append((name, payload))
                    if name == "run_finished":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(20)
    train(config, runs_root=runs_root)
    listener.join(20)
    assert not listener.is_alive(), seen
    name, snapshot = seen[0]
    assert name == "snapshot" and "later" not in {run["id"] for run in snapshot["runs"]}
    kinds = [name for name, _ in seen[1:]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    steps = [r["step"] for name, p in seen if name == "metrics" for r in p["records"]]
    assert steps == sorted(steps) and steps[-1] == 6
    assert seen[-1][1]["status"] == "completed"


@pytest.mark.parametrize("path", ["/api/runs/tiny/metrics?after=-5", "/api/runs/tiny/metrics?after=x"])
def test_bad_queries_are_400(live, path):
    r = httpx.get(live.url + path)
    assert r.status_code == 400 and r.json()["error"]["param"] == "after"


def test_a_run_that_starts_and_ends_between_two_polls_is_reported_finished(tmp_path,
                                                                           trained_run):
    import shutil

    from alphagrad.serve.runs import RunsReader, RunsWatcher

    watcher = RunsWatcher(RunsReader(tmp_path))
    assert watcher.snapshot() == [] and watcher.poll() == []
    shutil.copytree(trained_run, tmp_path / "copy")
    kinds = [name for name, _ in watcher.poll()]
    assert kinds == ["run_started", "metrics", "run_finished"]
    assert watcher.poll() == []

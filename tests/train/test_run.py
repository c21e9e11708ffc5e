import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alphagrad.train.config import TrainConfig
from alphagrad.train.run import RunDir, make_run_folder
from alphagrad.train.runlock import RunInUse, RunLockLost


def test_create_writes_config_and_manifest(tmp_path):
    config = TrainConfig(n_layer=2, keep_last=2, seed=7, data_dir="data/x")
    run = RunDir.create(tmp_path / "runs" / "r1", config)
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.toml",
                                                          "manifest.json", "writer.lock"]
    assert TrainConfig.from_toml(run.config_path) == config
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["name"] == "r1" and manifest["status"] == "running" and manifest["seed"] == 7
    env = manifest["environment"]
    assert env["numpy"] == np.__version__ and env["python"] == platform.python_version()
    assert env["cpu"] and env["num_threads"] >= 1 and env["alphagrad"]
    assert run.checkpoints.keep_last == 2 and run.checkpoints.folder == run.checkpoint_dir
    run.lock.release()
    with pytest.raises(ValueError, match="already holds a run"):
        RunDir.create(run.path, config)
    with pytest.raises(ValueError, match="n_embd"):
        RunDir.create(tmp_path / "bad", TrainConfig(n_embd=130))


def test_open_update_and_finish(tmp_path):
    run = RunDir.create(tmp_path / "r", TrainConfig())
    again = RunDir.open(tmp_path / "r")
    assert again.config == TrainConfig() and again.name == "r"
    again.update_manifest(tokens_seen=np.int64(1234), note="resumed")
    manifest = again.finish(final_metrics={"val_loss": np.float32(1.5)}, iters=100)
    assert manifest == run.manifest
    assert manifest["status"] == "completed" and manifest["tokens_seen"] == 1234
    assert manifest["final_metrics"] == {"val_loss": 1.5} and manifest["iters"] == 100
    assert manifest["duration_seconds"] >= 0 and manifest["finished"] >= manifest["created"]
    assert [p.name for p in tmp_path.joinpath("r").iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ValueError, match="not an alphagrad run folder .no config.toml"):
        RunDir.open(tmp_path / "nothing")


def test_metrics_and_samples_append_and_survive_a_torn_line(tmp_path):
    run = RunDir.create(tmp_path / "r", TrainConfig())
    records = [{"step": i, "split": "train", "loss": np.float32(3.0 - i / 4)} for i in range(3)]
    for record in records:
        run.log_metrics(record)
    assert run.read_metrics() == [{"step": i, "split": "train", "loss": 3.0 - i / 4}
                                  for i in range(3)]
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 3, "spl')  # a crash mid-append
    assert len(run.read_metrics()) == 3
    reopened = RunDir.open(run.path)
    reopened.log_metrics({"step": 3, "split": "val", "loss": float("nan")})
    got = reopened.read_metrics()
    assert len(got) == 4 and got[3]["split"] == "val" and np.isnan(got[3]["loss"])
    run.log_samples([{"step": 1, "prompt": "a", "text": "ab\n"}, {"step": 1, "text": "é"}])
    assert run.read_samples()[1] == {"step": 1, "text": "é"}
    with open(run.metrics_path, "a") as f:
        f.write("garbage\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 5: not a JSON record"):
        run.read_metrics()
    with pytest.raises(TypeError, match="must be a dict"):
        run.log_metrics([1, 2])
    with pytest.raises(TypeError, match="cannot write a object"):
        run.log_metrics({"x": object()})


def test_make_run_folder_claims_a_fresh_name(tmp_path):
    first = make_run_folder(tmp_path, "exp")
    assert first == tmp_path / "exp" and first.is_dir()
    assert make_run_folder(tmp_path, "exp") == tmp_path / "exp-2"
    assert make_run_folder(tmp_path).parent == tmp_path


def _start_run(root, seed, barrier, queue):
    barrier.wait()
    queue.put(str(RunDir.create(make_run_folder(root), TrainConfig(seed=seed)).path))


def test_runs_started_together_get_folders_of_their_own(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_start_run, args=(str(tmp_path), seed, barrier, queue))
               for seed in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
    assert [p.exitcode for p in workers] == [0] * 4
    folders = [queue.get(timeout=5) for _ in workers]
    assert len(set(folders)) == 4
    seeds = {json.loads((Path(f) / "manifest.json").read_text())["seed"] for f in folders}
    assert seeds == {0, 1, 2, 3}  # each folder holds the run that claimed it, no mixture


_HOLD = """
import sys, time
from alphagrad.train.run import RunDir
run = RunDir.open(sys.argv[1])
run.lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_one_writer_per_run_folder_and_no_stale_lock_after_kill(tmp_path):
    run = RunDir.create(tmp_path / "r", TrainConfig())
    run.lock.release()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run.path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunInUse, match=rf"{run.path} is in use by process {holder.pid} "):
            RunDir.open(run.path).lock.acquire()
        with pytest.raises(RunInUse, match=f"process {holder.pid}"):
            RunDir.create(run.path, TrainConfig())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    again = RunDir.open(run.path)
    again.lock.acquire()  # the kernel released the dead process's lock
    assert again.lock.held
    again.lock.release()


def test_a_removed_lock_file_is_noticed(tmp_path):
    run = RunDir.create(tmp_path / "r", TrainConfig())
    run.lock.check()
    os.unlink(run.lock.path)
    with pytest.raises(RunLockLost, match="lost its lock"):
        run.lock.check()

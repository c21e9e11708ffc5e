import json
import platform

import numpy as np
import pytest

from alphagrad.train.config import TrainConfig
from alphagrad.train.run import RunDir, new_run_path


def test_create_writes_config_and_manifest(tmp_path):
    config = TrainConfig(n_layer=2, keep_last=2, seed=7, data_dir="data/x")
    run = RunDir.create(tmp_path / "runs" / "r1", config)
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.toml",
                                                          "manifest.json"]
    assert TrainConfig.from_toml(run.config_path) == config
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["name"] == "r1" and manifest["status"] == "running" and manifest["seed"] == 7
    env = manifest["environment"]
    assert env["numpy"] == np.__version__ and env["python"] == platform.python_version()
    assert env["cpu"] and env["num_threads"] >= 1 and env["alphagrad"]
    assert run.checkpoints.keep_last == 2 and run.checkpoints.folder == run.checkpoint_dir
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


def test_new_run_path_is_fresh(tmp_path):
    first = new_run_path(tmp_path, "exp")
    assert first == tmp_path / "exp"
    first.mkdir()
    assert new_run_path(tmp_path, "exp") == tmp_path / "exp-2"
    assert new_run_path(tmp_path).parent == tmp_path

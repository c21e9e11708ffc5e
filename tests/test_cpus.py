"""CPU quotas read from cgroup files, the cores they leave, and the default thread count
under a real one."""

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from alphagrad import _cpus
from alphagrad._cpus import CGROUP_ROOT, cpu_quota, usable_cores


def group(root: Path, path: str, **files: str) -> None:
    """Create the cgroup directory ``root/path`` holding ``files`` (name: content)."""
    directory = root / path.strip("/")
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text + "\n")


def quota(tmp_path: Path, proc_cgroup: str) -> float | None:
    (tmp_path / "cgroup").write_text(proc_cgroup)
    return cpu_quota(str(tmp_path / "cgroup"), str(tmp_path / "fs"))


def test_cgroup_v2_quota_is_quota_over_period(tmp_path):
    group(tmp_path / "fs", "/app", cpu__max="150000 100000")
    assert quota(tmp_path, "0::/app\n") == 1.5
    group(tmp_path / "fs", "/app", cpu__max="max 100000")
    assert quota(tmp_path, "0::/app\n") is None


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    group(tmp_path / "fs", "cpu/job", cpu__cfs_quota_us="50000", cpu__cfs_period_us="100000")
    assert quota(tmp_path, "4:memory:/job\n3:cpu,cpuacct:/job\n") == 0.5
    group(tmp_path / "fs", "cpu/job", cpu__cfs_quota_us="-1")
    assert quota(tmp_path, "3:cpu,cpuacct:/job\n") is None


def test_the_tightest_limit_on_the_path_wins(tmp_path):
    group(tmp_path / "fs", "/pod", cpu__max="100000 100000")  # one core for the whole pod
    group(tmp_path / "fs", "/pod/box", cpu__max="300000 100000")
    assert quota(tmp_path, "0::/pod/box\n") == 1.0


def test_a_container_sees_its_own_group_at_the_mount(tmp_path):
    """Without a cgroup namespace a container's /proc/self/cgroup names its group by its host path,
    which does not exist inside; the container's own limits lie at the mount itself."""
    group(tmp_path / "fs", "cpu", cpu__cfs_quota_us="200000", cpu__cfs_period_us="100000")
    assert quota(tmp_path, "3:cpu:/docker/0123abcd\n") == 2.0


def test_nothing_readable_or_nonsense_is_no_limit(tmp_path):
    assert cpu_quota(str(tmp_path / "missing"), str(tmp_path)) is None
    group(tmp_path / "fs", "/app", cpu__max="lots")
    assert quota(tmp_path, "garbage\n0::/app\n") is None


def test_usable_cores_keep_to_the_affinity_and_the_quota(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(_cpus, "cpu_quota", lambda: None)
    assert usable_cores() == cores
    monkeypatch.setattr(_cpus, "cpu_quota", lambda: cores + 8.0)  # more than it may run on
    assert usable_cores() == cores
    monkeypatch.setattr(_cpus, "cpu_quota", lambda: 1.4)
    assert usable_cores() == 1
    monkeypatch.setattr(_cpus, "cpu_quota", lambda: 0.2)  # a sliver of a core: still one
    assert usable_cores() == 1


def _one_core_group() -> Path:
    """A new cgroup (v1 or v2) whose CPU quota is one core's time, or skip the test."""
    name = f"alphagrad-test-{uuid.uuid4().hex[:8]}"
    v1, v2 = Path(CGROUP_ROOT, "cpu"), Path(CGROUP_ROOT)
    subtree = v2 / "cgroup.subtree_control"
    if (v1 / "cpu.cfs_quota_us").exists():
        box, files = v1 / name, {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"}
    elif subtree.exists() and "cpu" in subtree.read_text().split():
        box, files = v2 / name, {"cpu.max": "100000 100000"}
    else:
        pytest.skip("no cgroup CPU controller")
    try:
        box.mkdir()
        for file, text in files.items():
            (box / file).write_text(text + "\n")
    except OSError as error:
        if box.is_dir():
            box.rmdir()
        pytest.skip(f"cannot make a cgroup with a CPU quota: {error}")
    return box


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_the_default_starts_one_thread_under_a_one_core_quota():
    box = _one_core_group()
    script = textwrap.dedent(f"""
        import os
        with open({str(box / "cgroup.procs")!r}, "w") as procs:
            procs.write(str(os.getpid()))
        import alphagrad as ag
        print(ag.get_num_threads())
        ag.set_num_threads(2)  # a count the user fixes is theirs
        print(ag.get_num_threads())
    """)
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                timeout=120, check=False)
    finally:
        box.rmdir()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2"]

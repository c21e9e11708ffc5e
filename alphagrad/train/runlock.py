"""One writer per run folder: an OS file lock that dies with its process.

    lock = RunLock("runs/exp1")
    lock.acquire()          # RunInUse naming the holder's process if another one has it
    lock.check()            # RunLockLost if the lock file was removed or replaced meanwhile
    lock.release()

The lock is ``flock`` on ``writer.lock`` in the folder (``msvcrt.locking`` on Windows). The
kernel drops it when the process ends, however it ends, so a run killed with SIGKILL leaves no
stale lock behind. The file itself stays (removing it would let two processes lock two different
files); it holds the pid, host and command of the last holder, for the error message.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ModuleNotFoundError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = "writer.lock"


class RunInUse(ValueError):
    """Another process is writing to the run folder."""


class RunLockLost(RuntimeError):
    """The lock file was removed or replaced while held: another writer may have taken over."""


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _holder(path: Path) -> str:
    """Who holds the lock, from what it wrote into the file (it may not have written yet)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        where = "" if info["host"] == socket.gethostname() else f" on {info['host']}"
        return f"process {info['pid']}{where} ({info['command']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class RunLock:
    """The writer's lock on the run folder ``folder``."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (at once: no waiting); a no-op if this object holds it already."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise RunInUse(f"{self.path.parent} is in use by {_holder(self.path)}; wait for it "
                           "to finish or stop it first")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": " ".join(sys.argv)[:200] or "python",
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def check(self) -> None:
        """Raise RunLockLost unless the file at ``path`` is still the one this object locked."""
        if self._fd is None:
            raise RunLockLost(f"{self.path.parent}: the writer's lock is not held")
        try:
            same = os.path.samestat(os.fstat(self._fd), os.stat(self.path))
        except OSError:
            same = False
        if not same:
            raise RunLockLost(f"{self.path.parent} lost its lock ({self.path} was removed or "
                              "replaced); another process may be writing to it, so this one "
                              "stopped")

    def __del__(self) -> None:
        self.release()

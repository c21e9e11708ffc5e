"""Run the ``alphagrad`` command line as one MPI rank, noting every file it changes.

    mpiexec -n 2 python mpi_rank.py train --data DATA --out RUN ...

Every write-like operation (open for writing, rename, mkdir, remove, SQLite connect) on a path
under $WATCH_ROOT is caught by an audit hook and printed at exit as one line,
``WRITES <rank> <json list of paths>``, so a test can see which rank touched which file.
"""

import atexit
import json
import os
import sys

WATCH = os.path.realpath(os.environ["WATCH_ROOT"])
RANK = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "?"))
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
writes: set[str] = set()


def _note(path) -> None:
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(path))
        if path.startswith(WATCH + os.sep):
            writes.add(os.path.relpath(path, WATCH))


def _audit(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        if (mode is not None and set(str(mode)) & set("wax+")) or (flags or 0) & WRITE_FLAGS:
            _note(path)
    elif event in ("os.rename", "os.replace"):
        _note(args[1])
    elif event in ("os.mkdir", "os.remove", "os.unlink", "os.rmdir", "os.truncate",
                   "sqlite3.connect"):
        _note(args[0])


sys.addaudithook(_audit)
atexit.register(lambda: print(f"WRITES {RANK} {json.dumps(sorted(writes))}", flush=True))

from alphagrad.cli import main  # imported after the hook, which must see everything it does

main()

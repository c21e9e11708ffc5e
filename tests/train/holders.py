"""Other processes that hold what a run needs: the runs database's write lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_HOLD_DB = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


class DatabaseHolder:
    """A process holding an exclusive transaction on ``path`` until ``release()``."""

    def __init__(self, path: Path):
        self.process = subprocess.Popen([sys.executable, "-c", _HOLD_DB, str(path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline() == "locked\n"

    def release(self) -> None:
        if self.process.returncode is None:
            self.process.communicate("\n", timeout=10)

    def __enter__(self) -> DatabaseHolder:  # noqa: PYI034 (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

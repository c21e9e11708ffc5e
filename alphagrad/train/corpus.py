"""The built-in corpus: the running interpreter's own standard-library source files.

Every Python installation has them, so the default training job needs no download. The
selection is deterministic: ``.py`` files in sorted path order, test suites skipped, until
``max_bytes`` is reached.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

_SKIP = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_files(max_bytes: int | None = None) -> list[Path]:
    """Paths of standard-library ``.py`` files, sorted, adding up to at most ``max_bytes``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"the standard library's source folder {root} is missing")
    chosen, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if _SKIP.intersection(path.relative_to(root).parts[:-1]):
            continue
        size = path.stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            if total:
                break
            continue
        chosen.append(path)
        total += size
    if not chosen:
        raise FileNotFoundError(f"no Python source files found under {root}")
    return chosen


def read_stdlib_text(max_bytes: int | None = None) -> str:
    """The selected files' text, one after another (undecodable bytes replaced)."""
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in stdlib_files(max_bytes))

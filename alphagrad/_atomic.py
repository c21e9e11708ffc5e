"""Atomic file writes: a reader sees the old file or the new one, never half of either.

    with atomic_writer("run/manifest.json", "w") as f:
        f.write(text)

The data goes to a temporary file in the same folder, is flushed and fsynced, then renamed over
the target with ``os.replace`` (atomic on POSIX and Windows) and the folder is fsynced so the
rename itself survives a power cut. If anything raises, the temporary file is removed and the
old file is left untouched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_SUFFIX = ".tmp"


@functools.cache
def _umask() -> int:
    # mkstemp creates files as 0600; give ours the permissions open() would have.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Yield a file to write ``path``'s new contents into; it replaces ``path`` on success.

    ``mode`` is ``"wb"`` (binary, seekable) or ``"w"`` (UTF-8 text).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        encoding = None if mode == "wb" else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            os.chmod(tmp, 0o666 & ~_umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_writer(path, "w") as f:
        f.write(text)


def remove_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writes in ``folder`` left when their process was killed
    before the rename; returns them. Only for a folder no live process is writing to."""
    found = sorted(Path(folder).glob(f".*{TMP_SUFFIX}"))
    for path in found:
        path.unlink(missing_ok=True)
    return found

"""Every test gets its own runs root, so no run or runs database lands in the working folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def own_runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHAGRAD_RUNS", str(tmp_path / "runs-root"))

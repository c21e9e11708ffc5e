"""The one random generator alphagrad draws from, so one seed makes a run repeatable."""

from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.Generator(np.random.PCG64())


def manual_seed(seed: int) -> np.random.Generator:
    """Seed every random draw alphagrad makes (init, dropout, randn, sampling without a seed)."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.Generator(np.random.PCG64(int(seed)))
    return _generator


def generator() -> np.random.Generator:
    """The library-wide generator (replaced by ``manual_seed``)."""
    return _generator


def get_rng_state(gen: np.random.Generator | None = None) -> dict[str, Any]:
    """The full state of ``gen`` (default: the library generator), as plain data (big integers
    as decimal strings, so any file format can hold it)."""
    state = (gen or _generator).bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def set_rng_state(state: dict[str, Any], gen: np.random.Generator | None = None) -> None:
    """Restore into ``gen`` (default: the library generator) a state from ``get_rng_state``;
    later draws repeat exactly."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        found = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"set_rng_state: expected a PCG64 state, got {found!r}")
    (gen or _generator).bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {k: int(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }

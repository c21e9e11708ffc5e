"""``alphagrad serve``: an OpenAI-compatible inference server with continuous batching, the
runs API with live updates, and a web page (needs the ``serve`` extra: fastapi, uvicorn).

    from alphagrad.serve import create_app, load_all, run
    run(create_app(load_all(["runs/20260101-120000"]), runs_root="runs"))

``alphagrad.serve.engine`` (the batching engine) needs neither.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"create_app": "app", "load_all": "registry", "load": "registry", "run": "server",
         "make_server": "server", "Engine": "engine", "SamplingParams": "engine"}
EXTRA_HINT = "alphagrad serve needs the serve extra: pip install 'alphagrad[serve]'"


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'alphagrad.serve' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(f"alphagrad.serve.{_LAZY[name]}")
    except ModuleNotFoundError as e:
        if e.name in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise ModuleNotFoundError(f"{EXTRA_HINT} ({e.name} is missing)", name=e.name) from None
        raise
    return getattr(module, name)


__all__ = list(_LAZY)

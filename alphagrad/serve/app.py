"""The FastAPI application: the OpenAI-compatible API, the runs API and the web page.

    app = create_app(load_all(["runs/20260101-120000"]), runs_root="runs", api_key=None)

``app.state.shutdown()`` ends every in-flight generation with an error event and the live
runs streams, so a server stops at once however many clients are connected.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from alphagrad import __version__
from alphagrad.serve import errors, openai_routes, runs_routes
from alphagrad.serve.registry import ServedModel
from alphagrad.serve.schemas import Health


def create_app(models: dict[str, ServedModel], runs_root: str | Path = "runs",
               api_key: str | None = None) -> FastAPI:
    """An app serving ``models`` (started with it) and the runs under ``runs_root``."""
    stopping = threading.Event()

    def shutdown() -> None:
        stopping.set()
        for served in models.values():
            served.engine.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for served in models.values():
            served.engine.start()
        try:
            yield
        finally:
            shutdown()

    app = FastAPI(title="alphagrad", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible inference with continuous batching, and the "
                              "records of training runs.")
    app.state.models, app.state.api_key = models, api_key
    app.state.runs_root = Path(runs_root if runs_root is not None else "runs")
    app.state.stopping, app.state.shutdown = stopping, shutdown
    errors.install(app)
    app.include_router(openai_routes.router)
    app.include_router(runs_routes.router)

    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The web page: runs, their live loss charts, and a playground."""
        return FileResponse(static / "index.html")

    @app.get("/health", response_model=Health)
    def health() -> Health:
        """Up, and the models it serves (no API key needed)."""
        return Health(models=list(models))

    def openapi() -> dict:
        """FastAPI's schema, with its 422 responses dropped: invalid requests get a 400 here."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path in schema["paths"].values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(errors.ErrorResponse(error=errors.ErrorDetail(
            message=str(exc), type="invalid_request_error")).model_dump(), status_code=400)

    return app

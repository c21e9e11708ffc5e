"""The runs API: /api/runs, one run, its metrics after a step, and /api/runs/live (events)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from alphagrad.serve.auth import require_api_key
from alphagrad.serve.errors import ERROR_RESPONSES, APIError
from alphagrad.serve.runs import RunsReader, RunsWatcher, UnknownRun, finite
from alphagrad.serve.schemas import MetricsPage, RunDetail, RunList

router = APIRouter(prefix="/api/runs", dependencies=[Depends(require_api_key)],
                   responses=ERROR_RESPONSES)
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0


def reader(request: Request) -> RunsReader:
    return RunsReader(request.app.state.runs_root)


def _unknown(e: UnknownRun) -> APIError:
    return APIError(404, str(e.args[0]), "id", "run_not_found")


@router.get("", response_model=RunList)
def list_runs(request: Request) -> RunList:
    """Every run under the runs root: status, step, losses, tokens/s, ETA."""
    return RunList(runs=finite(reader(request).summaries()))


def _event(name: str, data) -> str:
    return f"event: {name}\ndata: {json.dumps(finite(data), default=str)}\n\n"


@router.get("/live", responses={200: {"content": {"text/event-stream": {}},
                                      "description": "server-sent events"}})
async def live(request: Request) -> StreamingResponse:
    """Server-sent events: ``snapshot`` (every run), then ``run_started``, ``metrics`` (new
    records of a run), ``run_updated`` and ``run_finished`` as training goes."""
    watcher = RunsWatcher(reader(request))
    stopping = request.app.state.stopping

    async def events() -> AsyncIterator[str]:
        yield _event("snapshot", {"runs": await run_in_threadpool(watcher.snapshot)})
        quiet_since = time.monotonic()
        while not stopping.is_set():
            await asyncio.sleep(POLL_SECONDS)
            for name, data in await run_in_threadpool(watcher.poll):
                yield _event(name, data)
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since > HEARTBEAT_SECONDS:
                yield ": still here\n\n"  # a comment line keeps proxies from closing the stream
                quiet_since = time.monotonic()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{run_id:path}/metrics", response_model=MetricsPage)
def run_metrics(request: Request, run_id: str,
                after: int = Query(-1, ge=-1, le=2**62, description="only steps after this")
                ) -> MetricsPage:
    """A run's metric records of steps after ``after`` (all by default)."""
    try:
        records = reader(request).metrics(run_id, after)
    except UnknownRun as e:
        raise _unknown(e) from None
    return MetricsPage(id=run_id, after=after, records=finite(records))


@router.get("/{run_id:path}", response_model=RunDetail)
def run_detail(request: Request, run_id: str) -> RunDetail:
    """One run: its row, settings, manifest, evaluations, checkpoints and samples."""
    try:
        return RunDetail(**finite(reader(request).detail(run_id)))
    except UnknownRun as e:
        raise _unknown(e) from None

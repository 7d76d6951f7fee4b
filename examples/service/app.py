"""The workflow service on workflow_db: FastAPI + AsyncWorkflowStore, as several replicas run it.

    python -m workflow_db.migrate --url "$WORKFLOW_DB_URL"     # once per deploy
    WORKFLOW_DB_URL=postgresql://... uvicorn examples.service.app:app --port 8000

Every route is scoped by project: another project's graph or run is a 404,
word for word the one an unknown id gets. Runs are executed by the replica
that claims them (:mod:`examples.service.executor`); ``GET
/projects/{p}/events`` streams the project's changes as Server-Sent Events,
resumable with ``Last-Event-ID``. Settings come from the environment:
``WORKFLOW_DB_URL``, ``WORKFLOW_DB_LISTEN_URL`` (PostgreSQL: a direct URL for
LISTEN, when ``WORKFLOW_DB_URL`` goes through PgBouncer), ``SERVICE_POOL_SIZE``,
``SERVICE_WRITE_SLOTS`` (the executors' node writes in flight at once; by
default the pool's size less two; fewer favour the API's latency over the
runs' throughput) and the executor's ``SERVICE_LEASE_SECONDS``,
``SERVICE_STEP_SECONDS``, ``SERVICE_STEPS``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, cast

from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from workflow_db import (
    AsyncWorkflowStore,
    ConflictError,
    IntegrityError,
    ValidationError,
    WorkflowGraph,
    WorkflowRunStatus,
    connect_async,
)

from .executor import Replica
from .memory import MemoryStore

KEEPALIVE_SECONDS = 15.0
"""An SSE comment after this long without a change keeps proxies from closing the stream."""


def to_json(value: Any) -> Any:
    """A workflow_db record (a frozen dataclass, RunSummary included) as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {to_json(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


class GraphIn(BaseModel):
    """A graph as the service's editor sends it: its nodes and edges."""

    name: str
    description: str | None = None
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]] = Field(default_factory=list)


class RunIn(BaseModel):
    """A new run of a workflow."""

    workflow_id: str
    input: Any = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One pool for the process, one replica executing runs; both closed on shutdown."""
    url = os.environ.get("WORKFLOW_DB_URL", "sqlite:///workflow.db")
    pool_size = int(os.environ.get("SERVICE_POOL_SIZE", "8"))
    if url == "memory:":  # the service as it was, on dictionaries (the benchmark's ceiling)
        store = cast(AsyncWorkflowStore, MemoryStore())  # the same calls, duck-typed
        db = None
    else:
        db = await connect_async(
            url,
            max_size=pool_size,
            listen_url=os.environ.get("WORKFLOW_DB_LISTEN_URL") or None,
        )
        store = AsyncWorkflowStore(db)
    write_slots = int(os.environ.get("SERVICE_WRITE_SLOTS", "0")) or max(1, pool_size - 2)
    replica = Replica(store, write_slots=write_slots)
    app.state.store, app.state.replica = store, replica
    replica.start()
    try:
        yield
    finally:
        await replica.stop()
        if db is not None:
            await db.close()


app = FastAPI(title="workflow service (workflow_db example)", lifespan=lifespan)


def store_of(request: Request) -> AsyncWorkflowStore:
    store: AsyncWorkflowStore = request.app.state.store
    return store


def found(value: Any, what: str) -> Any:
    """``value``, or a 404 (the same for an unknown id and another project's)."""
    if value is None:
        raise HTTPException(status_code=404, detail=f"no such {what}")
    return value


@app.exception_handler(ValidationError)
async def bad_input(request: Request, exc: ValidationError) -> Response:
    return Response(json.dumps({"detail": str(exc)}), status_code=422, media_type="application/json")


@app.exception_handler(ConflictError)
async def conflict(request: Request, exc: ConflictError) -> Response:
    return Response(json.dumps({"detail": str(exc)}), status_code=409, media_type="application/json")


# -- graphs ----------------------------------------------------------------------------


@app.post("/projects/{project_id}/graphs", status_code=201)
async def create_graph(project_id: str, body: GraphIn, request: Request) -> Any:
    store = store_of(request)
    await store.ensure_project(project_id)
    structure = {"nodes": body.nodes, "edges": body.edges}
    return to_json(
        await store.create_graph(WorkflowGraph(project_id, body.name, structure, body.description))
    )


@app.get("/projects/{project_id}/graphs")
async def list_graphs(project_id: str, request: Request) -> Any:
    return [to_json(graph) for graph in await store_of(request).list_graphs(project_id)]


@app.get("/projects/{project_id}/graphs/{graph_id}")
async def get_graph(project_id: str, graph_id: str, request: Request) -> Any:
    return to_json(found(await store_of(request).get_graph(graph_id, project_id=project_id), "graph"))


@app.put("/projects/{project_id}/graphs/{graph_id}")
async def update_graph(project_id: str, graph_id: str, body: GraphIn, request: Request) -> Any:
    structure = {"nodes": body.nodes, "edges": body.edges}
    changed = await store_of(request).update_graph(
        graph_id, name=body.name, description=body.description, graph=structure, project_id=project_id
    )
    return to_json(found(changed, "graph"))


# -- runs ------------------------------------------------------------------------------


@app.post("/projects/{project_id}/runs", status_code=201)
async def create_run(project_id: str, body: RunIn, request: Request) -> Any:
    store = store_of(request)
    try:
        run = await store.create_run(body.workflow_id, body.input, project_id=project_id)
    except IntegrityError:
        raise HTTPException(status_code=404, detail="no such graph") from None
    replica: Replica = request.app.state.replica
    await replica.take(run.id)
    return to_json(run)


@app.get("/projects/{project_id}/runs")
async def list_runs(
    project_id: str, request: Request, status: WorkflowRunStatus | None = None, limit: int = 50
) -> Any:
    return [to_json(run) for run in await store_of(request).list_runs(project_id, status, limit=limit)]


@app.get("/projects/{project_id}/runs/{run_id}")
async def get_run(project_id: str, run_id: str, request: Request) -> Any:
    return to_json(found(await store_of(request).get_run(run_id, project_id=project_id), "run"))


@app.get("/projects/{project_id}/runs/{run_id}/summary")
async def run_summary(project_id: str, run_id: str, request: Request) -> Any:
    summary = found(await store_of(request).run_summary(run_id, project_id=project_id), "run")
    return to_json(summary)


@app.post("/projects/{project_id}/runs/{run_id}/cancel")
async def cancel_run(project_id: str, run_id: str, request: Request) -> Any:
    store = store_of(request)
    return to_json(
        found(await store.cancel_run(run_id, last_message="Cancelled.", project_id=project_id), "run")
    )


@app.post("/projects/{project_id}/runs/{run_id}/pause")
async def pause_run(project_id: str, run_id: str, request: Request) -> Any:
    paused = await store_of(request).pause_run(run_id, last_message="Paused.", project_id=project_id)
    return to_json(found(paused, "run"))


@app.post("/projects/{project_id}/runs/{run_id}/resume")
async def resume_run(project_id: str, run_id: str, request: Request) -> Any:
    store = store_of(request)
    run = found(await store.resume_run(run_id, last_message="Resumed.", project_id=project_id), "run")
    replica: Replica = request.app.state.replica
    await replica.take(run_id)  # if its old executor still holds it, that one goes on
    return to_json(run)


# -- the project's changes, streamed ---------------------------------------------------------


@app.get("/projects/{project_id}/events")
async def events(
    project_id: str,
    request: Request,
    last_event_id: Annotated[int | None, Header()] = None,
    after: int | None = None,
) -> StreamingResponse:
    """Server-Sent Events: each change of the project as it commits; ``id`` is its seq.

    A client that reconnects with ``Last-Event-ID`` (browsers do) resumes
    after the last change it got, missing none.
    """
    store = store_of(request)

    async def stream() -> AsyncIterator[str]:
        cursor = last_event_id if last_event_id is not None else after
        while not await request.is_disconnected():
            async for change in store.watch(cursor, project_id=project_id, timeout=KEEPALIVE_SECONDS):
                record = change.run if change.run is not None else change.node_state
                kind = "workflow.run.updated" if change.kind == "run" else "workflow.node_state.updated"
                yield f"id: {change.seq}\nevent: {kind}\ndata: {json.dumps(to_json(record))}\n\n"
                cursor = change.seq
            yield ": keepalive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@app.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    replica: Replica = request.app.state.replica
    return {"owner": replica.owner, "executing": sorted(replica.running)}


@app.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """This replica's node writes so far (how many, their p50 / p99 in ms), and when each run
    status its executors wrote had committed (``"run_id:status"``: seconds since the epoch)."""
    replica: Replica = request.app.state.replica
    times = sorted(replica.write_seconds)
    if not times:
        return {"node_writes": 0, "status_written": replica.status_written}

    def at(share: float) -> float:
        return round(times[min(len(times) - 1, int(len(times) * share))] * 1000, 2)

    return {
        "node_writes": len(times),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "status_written": replica.status_written,
    }

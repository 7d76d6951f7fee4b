"""A FastAPI app on workflow_db: one pool per process, 404 for unknown ids, a resumable change stream.

python -m workflow_db.migrate && uvicorn examples.fastapi_app:app
"""

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from workflow_db import AsyncWorkflowStore, IntegrityError, connect_async


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with connect_async() as db:  # $WORKFLOW_DB_URL (else sqlite:///workflow.db), migrated
        app.state.store = AsyncWorkflowStore(db)
        yield  # the pool closes when the app stops


app = FastAPI(lifespan=lifespan)


def jsonable(record: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(record), default=str))  # datetimes, enums as text


@app.post("/projects/{project_id}/runs", status_code=201)
async def create_run(project_id: str, workflow_id: str, request: Request) -> Any:
    try:  # another project's graph is unknown here, word for word
        run = await request.app.state.store.create_run(workflow_id, project_id=project_id)
    except IntegrityError:
        raise HTTPException(404, "no such workflow") from None
    return jsonable(run)


@app.get("/projects/{project_id}/runs/{run_id}")
async def get_run(project_id: str, run_id: str, request: Request) -> Any:
    run = await request.app.state.store.get_run(run_id, project_id=project_id)
    if run is None:
        raise HTTPException(404, "no such run")
    return jsonable(run)


@app.get("/projects/{project_id}/events")
async def events(project_id: str, request: Request) -> StreamingResponse:
    """Server-Sent Events; a reconnecting browser sends Last-Event-ID and misses nothing."""
    last = request.headers.get("last-event-id", "")
    store: AsyncWorkflowStore = request.app.state.store

    async def stream() -> AsyncIterator[str]:
        after = int(last) if last.isdigit() else None  # None: every run and node state as it is now
        while not await request.is_disconnected():  # a client that left ends the stream
            async for change in store.watch(after, project_id=project_id, timeout=15):
                after, data = change.seq, json.dumps(jsonable(change.record))
                yield f"id: {change.seq}\nevent: {change.kind}\ndata: {data}\n\n"
            yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")

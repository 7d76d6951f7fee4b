"""A run's lifecycle beyond plain status changes: cancel, pause with a checkpoint, resume, summary.

Mixed into both stores. Each call is one
statement or one transaction, scoped like every by-id call (``project_id=``),
and refuses a run in the wrong status with a ConflictError that names it.
"""

from __future__ import annotations

from typing import Any

from . import queries as q
from .calls import lifecycle_params, lost_lease
from .dialects import AsyncDatabase
from .dialects.base import fetch_all, fetch_one
from .errors import ConflictError
from .models import (
    JsonCodec,
    WorkflowRun,
    id_params,
)
from .rows import RunSummary, run_from_row, run_summary_from_rows


class AsyncRunLifecycle:
    """cancel_run, pause_run, resume_run and run_summary (see the module's docstring)."""

    db: AsyncDatabase
    _json: JsonCodec

    async def cancel_run(
        self, run_id: str, *, last_message: str | None = None, project_id: str | None = None
    ) -> WorkflowRun | None:
        """Cancel a PENDING, RUNNING or PAUSED run, and each of its PENDING or RUNNING nodes.

        One transaction: the run becomes CANCELLED with ``finished_at`` (and is
        released); its nodes CANCELLED with ``completed_at``. None, changing
        nothing, for an unknown run; ConflictError naming the status of a run
        already finished.
        """
        params = lifecycle_params(self.db, run_id, project_id, last_message)
        async with self.db.writing() as session:
            row = await session.one(q.CANCEL_RUN.pick(project_id), params)
            if row is not None:
                await session.run(q.CANCEL_NODES, params)
        return await self._moved(row, params, "cancel", "pending, running or paused")

    async def pause_run(
        self,
        run_id: str,
        *,
        checkpoint: Any = None,
        last_message: str | None = None,
        project_id: str | None = None,
        lease_token: int | None = None,
    ) -> WorkflowRun | None:
        """RUNNING -> PAUSED: sets ``paused_at`` and stores ``checkpoint`` (any JSON value, capped).

        ``checkpoint=None`` keeps the one stored before. None for an unknown
        run; ConflictError naming the status of a run that is not RUNNING, or
        when ``lease_token`` is given and the run is no longer held under it.
        """
        params = lifecycle_params(self.db, run_id, project_id, last_message, lease_token)
        params["checkpoint_json"] = (
            None if checkpoint is None else self.db.encode_json(self._json.encode("checkpoint", checkpoint))
        )
        row = await self.db.write(q.PAUSE_RUN.pick(project_id), params, fetch_one)
        return await self._moved(row, params, "pause", "running")

    async def resume_run(
        self,
        run_id: str,
        *,
        last_message: str | None = None,
        project_id: str | None = None,
        lease_token: int | None = None,
    ) -> WorkflowRun | None:
        """PAUSED -> RUNNING: clears ``paused_at``, keeps ``checkpoint`` to resume from.

        None for an unknown run; ConflictError naming the status of a run that is
        not PAUSED, or when ``lease_token`` is given and the run is no longer held under it.
        """
        params = lifecycle_params(self.db, run_id, project_id, last_message, lease_token)
        row = await self.db.write(q.RESUME_RUN.pick(project_id), params, fetch_one)
        return await self._moved(row, params, "resume", "paused")

    async def run_summary(self, run_id: str, *, project_id: str | None = None) -> RunSummary | None:
        """The run, its node states, their mean progress, counts per status and the RUNNING ones.

        One round trip. None for an unknown run (or one of another project).
        """
        params = id_params(run_id, "run_id", project_id)
        rows = await self.db.read(q.RUN_SUMMARY.pick(project_id), params, fetch_all, replica=True)
        return run_summary_from_rows(rows)

    async def _moved(self, row: Any, params: dict[str, Any], verb: str, allowed: str) -> WorkflowRun | None:
        """The run a transition returned; else None if absent, or ConflictError naming its status."""
        if row is not None:
            return run_from_row(row)
        stored = await self.db.read(q.GET_RUN.pick(params["project_id"]), params, fetch_one)
        if stored is None:
            return None
        current, token = run_from_row(stored), params["lease_token"]
        if token is not None and current.lease_token != token:
            raise lost_lease(params["id"], token)
        status = current.status.value
        raise ConflictError(f"run {params['id']!r} is {status}: {verb}_run needs a {allowed} run")

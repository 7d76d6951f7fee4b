"""Leases: which service process holds a run, so that several replicas share the runs.

Mixed into both stores. A process claims a run (``claim_run``) or picks up
runs nobody holds (``claim_orphaned_runs``, e.g. at start, after another
replica died), renews its leases while it works (by claiming again, or all
of them in one ``renew_runs``), and releases the run when it stops; a run
that reaches a terminal status is released by that change. Every comparison
uses the database's clock, never the caller's.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from . import queries as q
from .calls import lease_params, renewal_params
from .dialects import AsyncDatabase
from .dialects.base import fetch_all, fetch_one
from .errors import ConflictError, ValidationError
from .models import (
    TERMINAL_RUN_STATUSES,
    WorkflowRun,
    WorkflowRunStatus,
    check_count,
    to_statuses,
)
from .rows import run_from_row, runs_from_rows


class AsyncRunLeases:
    """claim_run, claim_orphaned_runs, renew_runs and release_run (see the module's docstring)."""

    db: AsyncDatabase

    async def claim_run(
        self, run_id: str, owner: str, *, lease_seconds: float = 60.0, project_id: str | None = None
    ) -> WorkflowRun | None:
        """Hold ``run_id`` for ``owner`` until ``lease_seconds`` from now (the database's clock).

        Succeeds when the run is unfinished and free, or its lease expired, or
        ``owner`` holds it already (a renewal). Another live owner: ConflictError
        naming no one; a finished run: ConflictError naming its status; an
        unknown run (or one of another project): None.
        """
        params = lease_params(self.db, run_id, owner, lease_seconds, project_id)
        row = await self.db.write(q.CLAIM_RUN.pick(project_id), params, fetch_one)
        if row is not None:
            return run_from_row(row)
        current = await self._current(params)
        if current is None:
            return None
        if current.status in TERMINAL_RUN_STATUSES:
            raise ConflictError(f"run {run_id!r} is {current.status.value}: a finished run cannot be claimed")
        raise ConflictError(f"run {run_id!r} is held by another owner until its lease expires")

    async def claim_orphaned_runs(
        self,
        owner: str,
        *,
        lease_seconds: float = 60.0,
        limit: int = 10,
        project_id: str | None = None,
        status: WorkflowRunStatus | str | Collection[WorkflowRunStatus | str] = WorkflowRunStatus.RUNNING,
    ) -> list[WorkflowRun]:
        """Claim up to ``limit`` runs in ``status`` (one or a collection, none terminal) that are free.

        Free: its lease expired, or nobody owns it and nobody touched it for
        ``lease_seconds``. Concurrent callers in any number of processes never
        claim the same run. Oldest first: expired leases by expiry, unowned runs by start.
        """
        statuses = to_statuses(WorkflowRunStatus, status)
        finished = [s.value for s in statuses if s in TERMINAL_RUN_STATUSES]
        if finished:
            raise ValidationError(
                f"status: {', '.join(finished)} is finished; orphaned runs are claimed in "
                "pending, running or paused"
            )
        params = lease_params(self.db, "", owner, lease_seconds, project_id)
        params["limit"] = check_count("limit", limit)
        sql = q.claim_orphaned_runs(tuple(sorted(s.value for s in statuses)), project_id is not None)
        return runs_from_rows(await self.db.write(sql, params, fetch_all))

    async def renew_runs(
        self,
        run_ids: Collection[str],
        owner: str,
        *,
        lease_seconds: float = 60.0,
        project_id: str | None = None,
    ) -> list[WorkflowRun]:
        """Renew, in one statement, the leases ``owner`` holds on ``run_ids`` (at most 10,000):
        each until ``lease_seconds`` from now, its ``lease_token`` kept.

        Returns the runs renewed, as they are now, in the order of ``run_ids``
        (a PAUSED one tells its executor to stop). A run left out is no longer
        held by ``owner`` (taken over after its lease expired, released,
        finished), unknown, or of another project than ``project_id``: a
        process holding many runs renews them all every few seconds with one
        call instead of a ``claim_run`` each.
        """
        params = renewal_params(self.db, run_ids, owner, lease_seconds, project_id)
        if not run_ids:
            return []
        renewed = {
            run.id: run
            for run in runs_from_rows(await self.db.write(q.RENEW_RUNS.pick(project_id), params, fetch_all))
        }
        return [renewed.pop(run_id) for run_id in run_ids if run_id in renewed]

    async def release_run(
        self, run_id: str, owner: str, *, project_id: str | None = None
    ) -> WorkflowRun | None:
        """Let go of a run ``owner`` holds; ConflictError if it does not hold it, None if unknown."""
        params = lease_params(self.db, run_id, owner, 1.0, project_id)
        row = await self.db.write(q.RELEASE_RUN.pick(project_id), params, fetch_one)
        if row is not None:
            return run_from_row(row)
        if await self._current(params) is None:
            return None
        raise ConflictError(f"run {run_id!r} is not held by {owner!r}")

    async def _current(self, params: dict[str, Any]) -> WorkflowRun | None:
        row = await self.db.read(q.GET_RUN.pick(params["project_id"]), params, fetch_one)
        return None if row is None else run_from_row(row)

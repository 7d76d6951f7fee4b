"""The service's data in process memory, as it was before workflow_db: the benchmark's ceiling.

``WORKFLOW_DB_URL=memory:`` runs the same app on :class:`MemoryStore`: the
calls the app and its executor make, on dictionaries, with the same records.
Nothing survives the process and nothing is shared between replicas, which is
why the service moved to a database; ``scripts/bench_service.py`` runs it as
the upper bound of what one replica can do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from workflow_db import (
    Change,
    ConflictError,
    IntegrityError,
    RunSummary,
    WorkflowGraph,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
)

FINISHED = {WorkflowRunStatus.COMPLETED, WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED}


def _now() -> datetime:
    return datetime.now(UTC)


class MemoryStore:
    """The subset of AsyncWorkflowStore the example service uses, on dictionaries."""

    def __init__(self) -> None:
        self._graphs: dict[str, WorkflowGraph] = {}
        self._runs: dict[str, WorkflowRun] = {}
        self._nodes: dict[str, dict[str, WorkflowNodeState]] = {}
        self._ids = itertools.count(1)
        self._changes: list[Change] = []
        self._changed = asyncio.Condition()

    # -- graphs ------------------------------------------------------------------------------

    async def ensure_project(self, project_id: str) -> None:
        """Projects are only names here."""

    async def create_graph(self, graph: WorkflowGraph) -> WorkflowGraph:
        now = _now()
        stored = dataclasses.replace(
            graph, id=f"g{next(self._ids)}", version=1, created_at=now, updated_at=now
        )
        self._graphs[stored.id] = stored
        return stored

    async def list_graphs(self, project_id: str) -> list[WorkflowGraph]:
        return [graph for graph in self._graphs.values() if graph.project_id == project_id]

    async def get_graph(self, graph_id: str, *, project_id: str) -> WorkflowGraph | None:
        graph = self._graphs.get(graph_id)
        return graph if graph is not None and graph.project_id == project_id else None

    async def update_graph(self, graph_id: str, *, project_id: str, **fields: Any) -> WorkflowGraph | None:
        graph = await self.get_graph(graph_id, project_id=project_id)
        if graph is None:
            return None
        changed = dataclasses.replace(graph, **fields, version=graph.version + 1, updated_at=_now())
        self._graphs[graph_id] = changed
        return changed

    # -- runs --------------------------------------------------------------------------------

    async def create_run(self, workflow_id: str, input: Any = None, *, project_id: str) -> WorkflowRun:
        graph = await self.get_graph(workflow_id, project_id=project_id)
        if graph is None:
            raise IntegrityError(f"workflow_id: no graph {workflow_id!r}")
        now = _now()
        run = WorkflowRun(
            f"run_{next(self._ids)}", project_id, workflow_id, graph.version, WorkflowRunStatus.PENDING,
            input, None, now, None, "Run created (pending).", now,
        )  # fmt: skip
        self._runs[run.id] = run
        self._nodes[run.id] = {
            node["id"]: WorkflowNodeState(
                run.id, node["id"], WorkflowNodeStatus.PENDING, 0.0, [], None, None, None
            )
            for node in graph.graph["nodes"]
        }
        await self._note(run)
        return run

    async def get_run(self, run_id: str, *, project_id: str | None = None) -> WorkflowRun | None:
        run = self._runs.get(run_id)
        return run if run is not None and project_id in (None, run.project_id) else None

    async def list_runs(
        self, project_id: str, status: WorkflowRunStatus | None = None, *, limit: int = 50
    ) -> list[WorkflowRun]:
        runs = [r for r in self._runs.values() if r.project_id == project_id and status in (None, r.status)]
        return sorted(runs, key=lambda run: run.started_at, reverse=True)[:limit]

    async def run_summary(self, run_id: str, *, project_id: str) -> RunSummary | None:
        run = await self.get_run(run_id, project_id=project_id)
        if run is None:
            return None
        nodes = list(self._nodes[run_id].values())
        counts = dict.fromkeys(WorkflowNodeStatus, 0)
        for node in nodes:
            counts[node.status] += 1
        running = [node.node_id for node in nodes if node.status is WorkflowNodeStatus.RUNNING]
        progress = sum(node.progress for node in nodes) / len(nodes) if nodes else 0.0
        return RunSummary(run, nodes, progress, MappingProxyType(counts), running)

    async def update_run_status(
        self,
        run_id: str,
        status: WorkflowRunStatus,
        *,
        last_message: str | None = None,
        lease_token: int | None = None,
    ) -> WorkflowRun | None:
        run = self._fenced(run_id, lease_token)
        finished = status in FINISHED
        return await self._change(
            run,
            status=status,
            last_message=last_message or run.last_message,
            finished_at=_now() if finished else run.finished_at,
            **({"owner": None, "lease_expires_at": None, "lease_token": None} if finished else {}),
        )

    async def cancel_run(self, run_id: str, *, last_message: str, project_id: str) -> WorkflowRun | None:
        run = await self.get_run(run_id, project_id=project_id)
        if run is None:
            return None
        if run.status in FINISHED:
            raise ConflictError(f"run {run_id!r} is {run.status.value}: cancel_run needs an unfinished run")
        for node in self._nodes[run_id].values():
            if node.status in (WorkflowNodeStatus.PENDING, WorkflowNodeStatus.RUNNING):
                await self._set_node(node, status=WorkflowNodeStatus.CANCELLED, completed_at=_now())
        return await self.update_run_status(run_id, WorkflowRunStatus.CANCELLED, last_message=last_message)

    async def pause_run(self, run_id: str, *, last_message: str, project_id: str) -> WorkflowRun | None:
        return await self._move(
            run_id, project_id, WorkflowRunStatus.RUNNING, WorkflowRunStatus.PAUSED, last_message
        )

    async def resume_run(self, run_id: str, *, last_message: str, project_id: str) -> WorkflowRun | None:
        return await self._move(
            run_id, project_id, WorkflowRunStatus.PAUSED, WorkflowRunStatus.RUNNING, last_message
        )

    async def _move(
        self, run_id: str, project_id: str, source: WorkflowRunStatus, target: WorkflowRunStatus, message: str
    ) -> WorkflowRun | None:
        run = await self.get_run(run_id, project_id=project_id)
        if run is None:
            return None
        if run.status is not source:
            raise ConflictError(f"run {run_id!r} is {run.status.value}")
        return await self._change(run, status=target, last_message=message)

    # -- leases ------------------------------------------------------------------------------

    async def claim_run(self, run_id: str, owner: str, *, lease_seconds: float) -> WorkflowRun | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        now = _now()
        if run.status in FINISHED or (
            run.owner not in (None, owner) and run.lease_expires_at is not None and run.lease_expires_at > now
        ):
            raise ConflictError(f"run {run_id!r} cannot be claimed")
        token = run.lease_token if run.owner == owner else next(self._ids)
        until = now + timedelta(seconds=lease_seconds)
        return await self._change(run, owner=owner, lease_expires_at=until, lease_token=token)

    async def claim_orphaned_runs(
        self, owner: str, *, lease_seconds: float, status: Collection[WorkflowRunStatus], limit: int
    ) -> list[WorkflowRun]:
        return []  # one process: nobody else's runs to resume

    async def renew_runs(self, run_ids: list[str], owner: str, *, lease_seconds: float) -> list[WorkflowRun]:
        until = _now() + timedelta(seconds=lease_seconds)
        held = [self._runs[r] for r in run_ids if r in self._runs and self._runs[r].owner == owner]
        return [await self._change(run, lease_expires_at=until) for run in held if run.status not in FINISHED]

    async def release_run(self, run_id: str, owner: str) -> WorkflowRun | None:
        run = self._runs[run_id]
        return await self._change(run, owner=None, lease_expires_at=None, lease_token=None)

    # -- node states -------------------------------------------------------------------------

    async def list_node_states(self, run_id: str) -> list[WorkflowNodeState]:
        return list(self._nodes.get(run_id, {}).values())

    async def set_node_state(
        self,
        run_id: str,
        node_id: str,
        *,
        status: WorkflowNodeStatus | None = None,
        progress: float | None = None,
        messages: list[str] | None = None,
        lease_token: int | None = None,
    ) -> WorkflowNodeState:
        self._fenced(run_id, lease_token)
        node = self._nodes[run_id][node_id]
        now = _now()
        changes: dict[str, Any] = {"progress": node.progress if progress is None else progress}
        if messages is not None:
            changes["messages"] = list(messages)
        if status is not None:
            changes["status"] = status
            if status is WorkflowNodeStatus.RUNNING:
                changes["started_at"] = now
            elif status is WorkflowNodeStatus.COMPLETED:
                changes["completed_at"] = now
        elif progress is not None and node.status is WorkflowNodeStatus.PENDING:
            changes["status"], changes["started_at"] = WorkflowNodeStatus.RUNNING, now
        return await self._set_node(node, **changes)

    async def append_node_message(
        self, run_id: str, node_id: str, message: str, *, lease_token: int | None = None
    ) -> WorkflowNodeState:
        self._fenced(run_id, lease_token)
        node = self._nodes[run_id][node_id]
        await self._set_node(node, messages=[*node.messages, message])
        return dataclasses.replace(node, messages=[message])

    # -- the feed ----------------------------------------------------------------------------

    async def watch(
        self, after: int | None = None, *, project_id: str, timeout: float | None = None
    ) -> AsyncIterator[Change]:
        cursor = after or 0
        while True:
            fresh = [c for c in self._changes[cursor:] if c.project_id == project_id]
            cursor = len(self._changes)
            for change in fresh:
                yield change
            if fresh:
                continue
            async with self._changed:
                try:
                    async with asyncio.timeout(timeout):
                        await self._changed.wait()
                except TimeoutError:
                    return

    # -- helpers -----------------------------------------------------------------------------

    def _fenced(self, run_id: str, lease_token: int | None) -> WorkflowRun:
        run = self._runs[run_id]
        if lease_token is not None and run.lease_token != lease_token:
            raise ConflictError(f"run {run_id!r}: lease {lease_token} is no longer held")
        return run

    async def _change(self, run: WorkflowRun, **fields: Any) -> WorkflowRun:
        changed = dataclasses.replace(run, **fields, updated_at=_now())
        self._runs[run.id] = changed
        await self._note(changed)
        return changed

    async def _set_node(self, node: WorkflowNodeState, **fields: Any) -> WorkflowNodeState:
        changed = dataclasses.replace(node, **fields)
        self._nodes[node.run_id][node.node_id] = changed
        await self._note(changed)
        return changed

    async def _note(self, record: WorkflowRun | WorkflowNodeState) -> None:
        """Append a change (its seq is its position, from 1) and wake the watchers."""
        seq = len(self._changes) + 1
        if isinstance(record, WorkflowRun):
            change = Change(seq, "run", record.project_id, record.id, None, record, None)
        else:
            project = self._runs[record.run_id].project_id
            change = Change(seq, "node_state", project, record.run_id, record.node_id, None, record)
        self._changes.append(change)
        async with self._changed:
            self._changed.notify_all()

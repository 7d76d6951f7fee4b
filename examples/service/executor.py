"""The service's executor: each replica runs the runs it holds, and resumes those nobody holds.

A run is executed by the replica that claimed it, under that claim's fencing
token: every write of the run passes ``lease_token=``, so a replica that lost
its lease (a long pause, a slow minute) writes nothing more once another has
taken the run over. Every third of the lease the replica renews the leases
of all the runs it executes with one ``renew_runs`` call; an executor stops
cleanly when its run is cancelled (the cancel ended the token), paused (the
renewal's answer says so), or its lease is lost.
Every replica looks for orphans (runs whose holder died, and PENDING runs
nobody started) every half lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

from workflow_db import (
    AsyncWorkflowStore,
    ConflictError,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
)

logger = logging.getLogger("examples.service")


@dataclass(frozen=True)
class Timing:
    """How long things take: a lease, and each node's steps (its simulated work)."""

    lease_seconds: float = float(os.environ.get("SERVICE_LEASE_SECONDS", "15"))
    step_seconds: float = float(os.environ.get("SERVICE_STEP_SECONDS", "0.05"))
    steps: int = int(os.environ.get("SERVICE_STEPS", "3"))


@dataclass
class Replica:
    """One service process: its owner name, the runs it executes, its orphan hunt."""

    store: AsyncWorkflowStore
    timing: Timing = field(default_factory=Timing)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    write_slots: int = 6
    """Node writes of the executors in flight at once: the pool's size less two, so that the
    API's requests (GET a run, its summary, the event streams) never queue behind them."""
    write_seconds: list[float] = field(default_factory=list)
    """How long each node write of this replica's executors took (for ``GET /stats``)."""
    status_written: dict[str, float] = field(default_factory=dict)
    """When each run status this replica's executors wrote had committed (``time.time()`` as the
    call returned), by ``"run_id:status"`` (for ``GET /stats``: where a change's delivery starts)."""
    _paused: dict[str, asyncio.Event] = field(default_factory=dict)
    """Per run executing here: set when a renewal finds it PAUSED."""
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        """Begin hunting orphans and renewing leases (call from the app's lifespan)."""
        self._background = [
            asyncio.create_task(self._hunt_orphans(), name="orphan-hunter"),
            asyncio.create_task(self._renew_leases(), name="lease-renewer"),
        ]

    async def stop(self) -> None:
        """Stop hunting and executing; the runs held stay claimed until their leases expire."""
        tasks = [*self.running.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def take(self, run_id: str) -> bool:
        """Claim ``run_id`` and execute it here; False if another replica holds it."""
        try:
            run = await self.store.claim_run(run_id, self.owner, lease_seconds=self.timing.lease_seconds)
        except ConflictError:
            return False
        if run is None:
            return False
        self._execute(run)
        return True

    def _execute(self, run: WorkflowRun) -> None:
        if run.id not in self.running:
            task = asyncio.create_task(self._run(run), name=f"run-{run.id}")
            self.running[run.id] = task
            task.add_done_callback(self._executed)

    def _executed(self, task: asyncio.Task[None]) -> None:
        """An executor ended: forget it, and log what stopped it if it failed."""
        self.running.pop(task.get_name().removeprefix("run-"), None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("executing %s failed", task.get_name(), exc_info=task.exception())

    async def _hunt_orphans(self) -> None:
        while True:
            try:
                orphans = await self.store.claim_orphaned_runs(
                    self.owner,
                    lease_seconds=self.timing.lease_seconds,
                    status=[WorkflowRunStatus.PENDING, WorkflowRunStatus.RUNNING],
                    limit=20,
                )
            except Exception:  # the database is away: try again next time
                logger.exception("claiming orphaned runs")
                orphans = []
            for run in orphans:
                logger.info("%s resumes run %s", self.owner, run.id)
                self._execute(run)
            await asyncio.sleep(self.timing.lease_seconds / 2)

    async def _run(self, run: WorkflowRun) -> None:
        token = run.lease_token
        paused = self._paused[run.id] = asyncio.Event()
        try:
            if run.status is WorkflowRunStatus.PENDING:
                await self._set_status(run.id, WorkflowRunStatus.RUNNING, "Run started.", token)
            for state in await self.store.list_node_states(run.id):
                if state.status is WorkflowNodeStatus.COMPLETED:
                    continue  # done before a restart: resume after it
                if not await self._run_node(run.id, state.node_id, token, paused):
                    with contextlib.suppress(ConflictError):  # paused: let another replica resume it
                        await self.store.release_run(run.id, self.owner)
                    return
            await self._set_status(run.id, WorkflowRunStatus.COMPLETED, "Run completed.", token)
        except ConflictError as exc:  # the lease is lost: taken over, or the run cancelled
            logger.info("%s stops run %s: %s", self.owner, run.id, exc)
        finally:
            del self._paused[run.id]

    async def _set_status(
        self, run_id: str, status: WorkflowRunStatus, message: str, token: int | None
    ) -> None:
        await self.store.update_run_status(run_id, status, last_message=message, lease_token=token)
        self.status_written[f"{run_id}:{status.value}"] = time.time()

    async def _run_node(self, run_id: str, node_id: str, token: int | None, paused: asyncio.Event) -> bool:
        """Run one node: RUNNING, its progress after each step, then COMPLETED with its message.

        False if the run was paused meanwhile (the node stays as it was, to run again on resume).
        """
        store, steps = self.store, self.timing.steps
        running = WorkflowNodeStatus.RUNNING
        await self._timed(
            store.set_node_state(run_id, node_id, status=running, progress=0.0, lease_token=token)
        )
        for step in range(1, steps + 1):
            await asyncio.sleep(self.timing.step_seconds)  # the node's work
            if paused.is_set():
                return False
            if step < steps:
                await self._timed(
                    store.set_node_state(run_id, node_id, progress=step / steps, lease_token=token)
                )
        done, message = WorkflowNodeStatus.COMPLETED, f"{self.owner}: {node_id} done in {steps} steps"
        await self._timed(  # its end and its messages in one write
            store.set_node_state(
                run_id, node_id, status=done, progress=1.0, messages=[message], lease_token=token
            )
        )
        return True

    async def _timed(self, write: Awaitable[object]) -> None:
        """Make a node write in one of the write slots, and time it (the slot's wait included)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.write_slots)
        started = time.perf_counter()
        async with self._slots:
            await write
        self.write_seconds.append(time.perf_counter() - started)

    async def _renew_leases(self) -> None:
        """Every third of the lease, renew the leases of every run executing here in one call.

        A run it finds PAUSED is told to stop; one left out (taken over, cancelled) stops at its
        next fenced write, which says which.
        """
        while True:
            await asyncio.sleep(self.timing.lease_seconds / 3)
            if not self._paused:
                continue
            try:
                renewed = await self.store.renew_runs(
                    list(self._paused), self.owner, lease_seconds=self.timing.lease_seconds
                )
            except Exception:  # the database is away: try again next time, within the lease
                logger.exception("renewing leases")
                continue
            for run in renewed:
                if run.status is WorkflowRunStatus.PAUSED and run.id in self._paused:
                    self._paused[run.id].set()

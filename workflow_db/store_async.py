"""AsyncWorkflowStore: projects, graphs, runs and node states over parameterised SQL.

The store validates input (:mod:`workflow_db.calls`), runs the statements of
:mod:`workflow_db.queries` through the dialect adapter and turns rows into
frozen records (:mod:`workflow_db.rows`). It never asks which database it
talks to. This is the one implementation of every call: ``store.py`` (the
synchronous WorkflowStore) is generated from it by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from . import queries as q
from .calls import (
    DEFAULT_MAX_JSON_BYTES,
    GRAPH_PAGES,
    RUN_PAGES,
    UPDATE_RETRIES,
    Pages,
    check_lease_token,
    graph_changes,
    keyset,
    lost_lease,
    run_filters,
    select,
    unknown_after,
)
from .dialects import AsyncDatabase
from .dialects.base import SQL, Row, fetch_all, fetch_one, fetch_rowcount
from .errors import ConflictError, GraphInUseError, IntegrityError, ValidationError
from .feed_async import AsyncChangeFeed
from .leases_async import AsyncRunLeases
from .lifecycle_async import AsyncRunLifecycle
from .models import (
    MAX_VERSION,
    TERMINAL_NODE_STATUSES,
    TERMINAL_RUN_STATUSES,
    JsonCodec,
    Project,
    WorkflowGraph,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
    check_aware,
    check_count,
    check_flag,
    check_graph,
    check_id,
    check_key,
    check_limit,
    check_messages,
    check_progress,
    check_text,
    id_params,
    new_id,
    to_status,
    utc_now,
)
from .rows import (
    graph_from_row,
    node_state_from_row,
    node_states_from_rows,
    project_from_row,
    run_from_row,
    runs_from_rows,
)

Record = TypeVar("Record")


class AsyncWorkflowStore(AsyncRunLifecycle, AsyncRunLeases, AsyncChangeFeed):
    """Durable, project-scoped storage of workflow graphs, runs and node states.

    Each call is its own transaction unless it runs inside
    :meth:`transaction`. Values returned are frozen dataclasses with aware UTC
    datetimes and decoded JSON. ``None`` for an optional argument means "not
    given": the stored value stays as it is.
    """

    def __init__(self, db: AsyncDatabase, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES) -> None:
        """Raises MigrationError, naming the command to run, on a database that is not migrated yet.

        TypeError for a database of the other kind (each store takes what its own
        ``connect`` function returns).
        """
        # Imported here: `python -m workflow_db.migrate` must not find its module already loaded.
        from .migrate import require_current

        if not isinstance(db, AsyncDatabase):
            raise TypeError(
                f"{type(self).__name__} needs the database connect_async() returns, got {type(db).__name__}"
            )
        self._json = JsonCodec(max_json_bytes)
        require_current(db)
        self.db = db

    @property
    def max_json_bytes(self) -> int:
        """The cap on every JSON value written, in bytes once serialised."""
        return self._json.max_bytes

    # -- transactions ------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Every store call inside commits together or not at all.

        An exception rolls all of it back and propagates; a nested block joins
        the outer one.
        """
        async with self.db.writing():
            yield

    # -- projects ---------------------------------------------------------------------

    async def ensure_project(self, project_id: str, name: str | None = None) -> Project:
        """Create project ``project_id`` if absent (named ``name``, default its id); return it.

        An existing project's name is left unchanged.
        """
        project_id = check_id("project_id", project_id)
        name = project_id if name is None else check_text("name", name)
        params = {"id": project_id, "name": name, "now": self._now()}
        row = await self.db.write(q.ENSURE_PROJECT, params, fetch_one)
        assert row is not None
        return project_from_row(row)

    async def get_project(self, project_id: str) -> Project | None:
        """The project ``project_id``, or None."""
        return await self._get(
            q.GET_PROJECT, {"id": check_key("project_id", project_id)}, project_from_row, replica=True
        )

    # -- graphs -------------------------------------------------------------------------

    async def create_graph(self, graph: WorkflowGraph) -> WorkflowGraph:
        """Store a new graph at version 1; its id is generated when ``graph.id`` is ``""``.

        The caller's ``version`` and timestamps are ignored. Raises
        IntegrityError if the project does not exist or the id is taken.
        """
        if not isinstance(graph, WorkflowGraph):
            raise ValidationError(f"graph: expected a WorkflowGraph, got {type(graph).__name__}")
        graph_id = check_id("id", graph.id) if graph.id else new_id()
        structure = check_graph(graph.graph)
        params = {
            "id": graph_id,
            "project_id": check_id("project_id", graph.project_id),
            "name": check_text("name", graph.name),
            "description": check_text("description", graph.description, optional=True),
            "graph_json": self.db.encode_json(self._json.encode("graph", structure)),
            "now": self._now(),
        }
        try:
            row = await self.db.write(q.INSERT_GRAPH, params, fetch_one, refusable=True)
        except IntegrityError as exc:
            if await self._exists(q.GRAPH_EXISTS.any_project, graph_id):
                raise IntegrityError(f"id: a graph {graph_id!r} already exists") from exc
            raise IntegrityError(
                f"project_id: no project {graph.project_id!r} (create it with ensure_project)"
            ) from exc
        assert row is not None
        return graph_from_row(row)

    async def get_graph(
        self, graph_id: str, *, version: int | None = None, project_id: str | None = None
    ) -> WorkflowGraph | None:
        """The graph ``graph_id`` as it is now, or as it was at ``version``; None if absent.

        ``project_id`` scopes the call: a graph of another project is absent.
        """
        params = id_params(graph_id, "graph_id", project_id)
        if version is None:
            return await self._get(q.GET_GRAPH.pick(project_id), params, graph_from_row, replica=True)
        params["version"] = check_count("version", version, MAX_VERSION)
        return await self._get(q.GET_GRAPH_VERSION.pick(project_id), params, graph_from_row, replica=True)

    async def list_graphs(
        self,
        project_id: str | None = None,
        *,
        limit: int | None = None,
        after: WorkflowGraph | str | None = None,
    ) -> list[WorkflowGraph]:
        """Graphs, newest first (``created_at``, then ``id``, descending).

        ``after`` is the last graph of the previous page (the object or its id).
        """
        where: list[str] = []
        params: dict[str, Any] = {}
        if project_id is not None:
            where.append("project_id = :project_id")
            params["project_id"] = check_key("project_id", project_id)
        after_id = keyset(self.db, after, GRAPH_PAGES, project_id, where=where, params=params)
        sql = select(q.LIST_GRAPHS, where, q.GRAPH_ORDER, check_limit(limit), params)
        rows = await self.db.read(sql, params, fetch_all, replica=True)
        if not rows and after_id is not None:
            await self._check_after(GRAPH_PAGES, after_id, project_id)
        return [graph_from_row(row) for row in rows]

    async def update_graph(
        self,
        graph_id: str,
        updates: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        project_id: str | None = None,
        **fields: Any,
    ) -> WorkflowGraph | None:
        """Change ``name``, ``description`` and/or ``graph``; None if the graph is absent.

        A real change bumps ``version`` (the old one stays readable with
        ``get_graph(version=N)``) and ``updated_at``; no change returns the
        graph as it is. ``expected_version`` makes it compare-and-set
        (ConflictError on mismatch). ``project_id`` scopes the call: a graph
        of another project is absent.
        """
        graph_id = check_key("graph_id", graph_id)
        changes = graph_changes({**(updates or {}), **fields})
        graph_json = (
            self.db.encode_json(self._json.encode("graph", changes["graph"])) if "graph" in changes else None
        )
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int)
        ):
            raise ValidationError(f"expected_version: expected an integer, got {expected_version!r}")
        for _ in range(UPDATE_RETRIES):
            current = await self.get_graph(graph_id, project_id=project_id)
            if current is None:
                return None
            if expected_version is not None and current.version != expected_version:
                raise ConflictError(
                    f"graph {graph_id!r} is at version {current.version}, not the expected {expected_version}"
                )
            if all(getattr(current, key) == value for key, value in changes.items()):
                return current
            params = {
                "id": graph_id,
                "read_version": current.version,
                "name": changes.get("name"),
                "description": changes.get("description"),
                "graph_json": graph_json,
                "now": self._now(),
            }
            row = await self.db.write(q.UPDATE_GRAPH, params, fetch_one)
            if row is not None:
                return graph_from_row(row)
            # Another writer changed the graph after we read it: decide again on its new state.
        raise ConflictError(f"graph {graph_id!r} kept changing under {UPDATE_RETRIES} attempts")

    async def delete_graph(
        self, graph_id: str, *, cascade: bool = False, project_id: str | None = None
    ) -> bool:
        """Delete a graph and its version history; False if absent.

        A graph that still has runs raises GraphInUseError, unless
        ``cascade=True`` deletes those runs and their node states too.
        ``project_id`` scopes the call: a graph of another project is absent.
        """
        params = id_params(graph_id, "graph_id", project_id)
        cascade = check_flag("cascade", cascade)
        delete_graph = q.DELETE_GRAPH.pick(project_id)
        try:
            if not cascade:
                return await self.db.write(delete_graph, params, fetch_rowcount) > 0
            async with self.db.writing() as session:
                if await session.one(q.LOCK_GRAPH.pick(project_id), params) is None:
                    return False
                await session.run(q.DELETE_GRAPH_RUNS.pick(project_id), params)
                return await session.run(delete_graph, params) > 0
        except IntegrityError as exc:
            row = await self.db.read(q.COUNT_GRAPH_RUNS, params, fetch_one)
            runs = row[0] if row else 0
            raise GraphInUseError(
                f"graph {graph_id!r} still has {runs} run(s): delete them first or pass cascade=True"
            ) from exc

    # -- runs ----------------------------------------------------------------------------

    async def create_run(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        project_id: str | None = None,
        status: WorkflowRunStatus | str = WorkflowRunStatus.PENDING,
        id: str | None = None,
        last_message: str | None = None,
    ) -> WorkflowRun:
        """Start a run of the graph's current version, with a PENDING state per node.

        ``project_id`` defaults to the graph's; given, it scopes the call (a
        graph of another project is unknown). Raises IntegrityError for an
        unknown workflow or a taken id.
        """
        workflow_id = check_id("workflow_id", workflow_id)
        run_status = to_status(WorkflowRunStatus, status)
        run_id = check_id("id", id) if id is not None else new_id()
        now = self._now()
        params = {
            "id": run_id,
            "workflow_id": workflow_id,
            "project_id": check_id("project_id", project_id) if project_id is not None else None,
            "status": run_status.value,
            "input_json": self._json_param("input", input),
            "now": now,
            "finished_at": now if run_status in TERMINAL_RUN_STATUSES else None,
            "last_message": check_text("last_message", last_message, optional=True),
        }
        row = await self.db.write(q.INSERT_RUN, params, fetch_one)
        if row is not None:
            return run_from_row(row)
        if not await self._exists(q.GRAPH_EXISTS.pick(project_id), workflow_id, project_id):
            # Word for word the same for a graph of another project: nothing reveals it exists.
            raise IntegrityError(f"workflow_id: no graph {workflow_id!r}")
        raise IntegrityError(f"id: a run {run_id!r} already exists")

    async def get_run(self, run_id: str, *, project_id: str | None = None) -> WorkflowRun | None:
        """The run ``run_id``, or None (also for a run of another project than ``project_id``)."""
        params = id_params(run_id, "run_id", project_id)
        return await self._get(q.GET_RUN.pick(project_id), params, run_from_row, replica=True)

    async def list_runs(
        self,
        project_id: str | None = None,
        status: WorkflowRunStatus | str | Collection[WorkflowRunStatus | str] | None = None,
        workflow_id: str | None = None,
        *,
        updated_before: datetime | None = None,
        limit: int | None = None,
        after: WorkflowRun | str | None = None,
    ) -> list[WorkflowRun]:
        """Runs matching every filter given, newest first (``started_at``, then ``id``).

        ``status`` is one status or a collection; ``updated_before`` finds runs
        nobody touched since (e.g. RUNNING runs orphaned by a restart);
        ``after`` is the last run of the previous page (the object or its id).
        """
        where, params = run_filters(self.db, project_id, status, workflow_id, updated_before)
        after_id = keyset(self.db, after, RUN_PAGES, project_id, where=where, params=params)
        sql = select(q.LIST_RUNS, where, q.RUN_ORDER, check_limit(limit), params)
        rows = await self.db.read(sql, params, fetch_all, replica=True)
        if not rows and after_id is not None:
            await self._check_after(RUN_PAGES, after_id, project_id)
        return runs_from_rows(rows)

    async def count_runs(
        self,
        project_id: str | None = None,
        status: WorkflowRunStatus | str | Collection[WorkflowRunStatus | str] | None = None,
        workflow_id: str | None = None,
        *,
        updated_before: datetime | None = None,
    ) -> int:
        """How many runs :meth:`list_runs` would return with the same filters."""
        where, params = run_filters(self.db, project_id, status, workflow_id, updated_before)
        sql = select(q.COUNT_RUNS, where, "", None, params)
        row = await self.db.read(sql, params, fetch_one, replica=True)
        return int(row[0]) if row else 0

    async def update_run_status(
        self,
        run_id: str,
        status: WorkflowRunStatus | str | None = None,
        *,
        finished: bool | None = False,
        last_message: str | None = None,
        output: Any = None,
        expected_status: WorkflowRunStatus | str | None = None,
        project_id: str | None = None,
        lease_token: int | None = None,
    ) -> WorkflowRun | None:
        """Change a run's status, ``last_message`` and/or ``output`` in one statement.

        ``finished=True`` or a terminal status sets ``finished_at`` (the first
        one is kept); leaving a terminal status clears it. ``updated_at``
        always grows, so a call with nothing else given is a heartbeat.
        ``expected_status`` makes it compare-and-set (ConflictError on
        mismatch). ``lease_token`` fences it: it happens only while the run is
        held under that token (else ConflictError). Returns None, changing
        nothing, if the run is absent (or of another project than ``project_id``).
        """
        new_status = to_status(WorkflowRunStatus, status) if status is not None else None
        expected = (
            to_status(WorkflowRunStatus, expected_status, "expected_status")
            if expected_status is not None
            else None
        )
        # None is "not given", as the legacy service's own signature passes it.
        finish = (finished is not None and check_flag("finished", finished)) or (
            new_status in TERMINAL_RUN_STATUSES
        )
        params = id_params(run_id, "run_id", project_id)
        params |= {
            "status": new_status.value if new_status is not None else None,
            "finish": finish,
            "reopen": new_status is not None and not finish,
            "last_message": check_text("last_message", last_message, optional=True),
            "output_json": self._json_param("output", output),
            "now": self._now(),
            "expected_status": expected.value if expected is not None else None,
            "leaves_pause": new_status is not None and new_status is not WorkflowRunStatus.PAUSED,
            "release": new_status in TERMINAL_RUN_STATUSES,  # a finished run is nobody's
            "lease_token": check_lease_token(lease_token),
        }
        sql = (q.UPDATE_RUN_STATUS if expected is None else q.UPDATE_RUN_STATUS_IF).pick(project_id)
        if new_status is WorkflowRunStatus.CANCELLED:  # whatever the path, a cancel ends its nodes too
            async with self.db.writing() as session:
                row = await session.one(sql, params)
                if row is not None:
                    await session.run(q.CANCEL_NODES, params)
        else:
            row = await self.db.write(sql, params, fetch_one)
        if row is not None:
            return run_from_row(row)
        token = params["lease_token"]
        if expected is None and token is None:
            return None
        current = await self.get_run(run_id, project_id=project_id)
        if current is None:
            return None
        # A token never comes back: without expected_status, only the fence refuses.
        if token is not None and (expected is None or current.lease_token != token):
            raise lost_lease(run_id, token)
        assert expected is not None
        raise ConflictError(f"run {run_id!r} is {current.status.value}, not the expected {expected.value}")

    async def prune_runs(
        self,
        finished_before: datetime,
        *,
        project_id: str | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Delete terminal runs finished before the cutoff, with their node states.

        Works in batches of ``batch_size``, one transaction each (inside
        :meth:`transaction` they join it); returns how many runs went.
        """
        params: dict[str, Any] = {
            "cutoff": self.db.encode_time(check_aware("finished_before", finished_before)),
            "batch_size": check_count("batch_size", batch_size),
            "project_id": None if project_id is None else check_key("project_id", project_id),
        }
        sql = q.PRUNE_RUNS_ANY_PROJECT if project_id is None else q.PRUNE_RUNS_OF_PROJECT
        pruned = 0
        while True:
            deleted = await self.db.write(sql, params, fetch_rowcount)
            pruned += deleted
            if deleted < batch_size:
                return pruned

    # -- node states ------------------------------------------------------------------------

    async def set_node_state(
        self,
        run_id: str,
        node_id: str,
        *,
        status: WorkflowNodeStatus | str | None = None,
        progress: float | None = None,
        messages: list[str] | None = None,
        error: str | None = None,
        project_id: str | None = None,
        lease_token: int | None = None,
    ) -> WorkflowNodeState:
        """Create or change a node's state; only the given fields change.

        Without a status, ``error`` makes it FAILED and ``progress`` moves it
        from PENDING to RUNNING. Entering RUNNING sets ``started_at`` (and
        clears ``completed_at``); entering COMPLETED, FAILED or SKIPPED sets
        ``completed_at``. The run's ``updated_at`` moves forward with it (a
        heartbeat). Raises IntegrityError for an unknown run, or one of
        another project than ``project_id``; ConflictError when ``lease_token``
        is given and the run is no longer held under it (nothing written).
        """
        node_id = check_id("node_id", node_id)
        given_status = to_status(WorkflowNodeStatus, status) if status is not None else None
        checked_progress = check_progress(progress) if progress is not None else None
        messages_text = (
            self._json.encode("messages", check_messages(messages)) if messages is not None else None
        )
        messages_bytes = len(messages_text.encode("utf-8")) if messages_text is not None else None
        messages_json = self.db.encode_json(messages_text) if messages_text is not None else None
        error = check_text("error", error, optional=True)
        forced = given_status or (WorkflowNodeStatus.FAILED if error is not None else None)
        insert_status = forced or (
            WorkflowNodeStatus.RUNNING if checked_progress is not None else WorkflowNodeStatus.PENDING
        )
        now = self._now()
        params = id_params(run_id, "run_id", project_id, key="run_id")
        params |= {
            "node_id": node_id,
            "forced_status": forced.value if forced is not None else None,
            "promote": forced is None and checked_progress is not None,
            "progress": checked_progress,
            "messages_json": messages_json,
            "messages_bytes": messages_bytes,
            "error": error,
            "now": now,
            "insert_status": insert_status.value,
            "insert_progress": checked_progress or 0.0,
            "insert_messages_json": messages_json or self.db.encode_json("[]"),
            "insert_messages_bytes": messages_bytes or 2,
            "insert_started_at": now if insert_status is WorkflowNodeStatus.RUNNING else None,
            "insert_completed_at": now if insert_status in TERMINAL_NODE_STATUSES else None,
            "lease_token": check_lease_token(lease_token),
        }

        def unchanged(state: WorkflowNodeState) -> bool:
            """Whether this call would leave ``state`` as it is (a retry, a wind-down)."""
            promotes = (
                forced is None and checked_progress is not None and state.status is WorkflowNodeStatus.PENDING
            )
            return (
                not promotes
                and forced in (None, state.status)
                and checked_progress in (None, state.progress)
                and (messages is None or list(messages) == state.messages)
                and error in (None, state.error)
            )

        state = await self._write_node_state(q.SET_NODE_STATE.pick(project_id), params, unchanged)
        assert state is not None  # an upsert without a WHERE always returns its row
        return state

    async def append_node_message(
        self,
        run_id: str,
        node_id: str,
        message: str,
        *,
        project_id: str | None = None,
        lease_token: int | None = None,
    ) -> WorkflowNodeState:
        """Append ``message`` to a node's messages atomically (concurrent appends all survive).

        Constant time whatever the count: the state returned has the appended
        message alone as its ``messages`` (``get_node_state`` reads the whole
        list). A node with no state yet gets one (PENDING); the run's
        ``updated_at`` moves forward (a heartbeat). Raises IntegrityError for an
        unknown run (or one of another project than ``project_id``),
        ValidationError if the list would outgrow max_json_bytes, ConflictError
        when ``lease_token`` is given and the run is no longer held under it.
        """
        node_id = check_id("node_id", node_id)
        message = str(check_text("message", message))
        encoded = self._json.encode("messages", [message])
        params = id_params(run_id, "run_id", project_id, key="run_id")
        params |= {
            "now": self._now(),
            "node_id": node_id,
            "message": message,
            "messages_json": self.db.encode_json(encoded),
            "added_bytes": len(encoded.encode("utf-8")) - 1,
            "max_bytes": self._json.max_bytes,
            "lease_token": check_lease_token(lease_token),
        }
        state = await self._write_node_state(q.APPEND_NODE_MESSAGE.pick(project_id), params, None)
        if state is None:  # the upsert's WHERE refused: the list would not fit
            raise ValidationError(
                f"messages: appending {len(message)} characters to node {node_id!r} of run "
                f"{run_id!r} would exceed max_json_bytes ({self._json.max_bytes})"
            )
        return state

    async def _write_node_state(
        self, sql: SQL, params: dict[str, Any], unchanged: Callable[[WorkflowNodeState], bool] | None
    ) -> WorkflowNodeState | None:
        """Run a node-state upsert; None if the run is there but the write's own WHERE refused it.

        Raises IntegrityError for an unknown run (or one of another project),
        ConflictError for a cancelled run, whose node states are final, unless
        the write would change nothing (``unchanged`` of the stored state):
        then the stored state, untouched.
        """
        row = await self.db.write(sql, params, fetch_one)
        if row is not None:
            return node_state_from_row(row)
        run_id, project_id = params["run_id"], params["project_id"]
        run = await self._get(
            q.GET_RUN.pick(project_id), id_params(run_id, "run_id", project_id), run_from_row
        )
        if run is None:
            raise IntegrityError(f"run_id: no run {run_id!r}")
        token = params["lease_token"]
        if token is not None and run.lease_token != token:
            raise lost_lease(run_id, token)
        if run.status is WorkflowRunStatus.CANCELLED:
            stored = await self.get_node_state(run_id, params["node_id"], project_id=project_id)
            if stored is not None and unchanged is not None and unchanged(stored):
                return stored
            raise ConflictError(f"run {run_id!r} is cancelled: its node states are final")
        return None

    async def get_node_state(
        self, run_id: str, node_id: str, *, project_id: str | None = None
    ) -> WorkflowNodeState | None:
        """The state of node ``node_id`` in run ``run_id``, or None (also for a run of another project)."""
        params = id_params(run_id, "run_id", project_id, key="run_id")
        params["node_id"] = check_key("node_id", node_id)
        return await self._get(q.GET_NODE_STATE.pick(project_id), params, node_state_from_row, replica=True)

    async def list_node_states(
        self, run_id: str, *, project_id: str | None = None
    ) -> list[WorkflowNodeState]:
        """A run's node states in the order of its graph version's nodes, then others by id.

        Empty for an unknown run, or one of another project than ``project_id``.
        """
        params = id_params(run_id, "run_id", project_id, key="run_id")
        return node_states_from_rows(
            await self.db.read(q.LIST_NODE_STATES.pick(project_id), params, fetch_all, replica=True)
        )

    # -- helpers --------------------------------------------------------------------------------

    def _now(self) -> Any:
        return self.db.encode_time(utc_now())

    def _json_param(self, field: str, value: Any) -> Any:
        return None if value is None else self.db.encode_json(self._json.encode(field, value))

    async def _get(
        self, sql: SQL, params: Mapping[str, Any], build: Callable[[Row], Record], *, replica: bool = False
    ) -> Record | None:
        """The record the row ``sql`` finds makes, or None; ``replica``: the read may go to a replica."""
        row = await self.db.read(sql, params, fetch_one, replica=replica)
        return None if row is None else build(row)

    async def _exists(self, sql: str, key: str, project_id: str | None = None) -> bool:
        return await self.db.read(sql, {"id": key, "project_id": project_id}, fetch_one) is not None

    async def _check_after(self, pages: Pages, after_id: str, project_id: str | None) -> None:
        """An empty page after an id: make sure the id exists (an unknown one is a mistake)."""
        if not await self._exists(pages.exists_sql.pick(project_id), after_id, project_id):
            raise unknown_after(pages, after_id)

"""Each list query is planned on its intended index, with no full scan and no sort step.

The SQL checked is the SQL the store really runs (recorded from the adapter),
explained on an analysed data set of 20,000 runs on both databases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import DIALECTS, PostgresServer, require_pg

from workflow_db import WorkflowGraph, WorkflowStore, connect
from workflow_db import queries as q
from workflow_db.calls import renewal_params
from workflow_db.dialects import DialectSQL
from workflow_db.migrate import upgrade
from workflow_db.models import utc_now


@pytest.fixture
def store_kind() -> str:
    """Sync only: query plans: both stores send the same statements."""
    return "sync"


RUNS = 50_000
PROJECTS = 100

# 50,000 runs, newest last: one run in ten belongs to proj_0 (and its graph-0),
# the rest spread over 99 projects; one in seven is running, the others mostly
# completed. Pages over the big sets must read their index in order; small
# sets may be fetched by index and sorted, which is what a planner should do.
LOAD_RUNS = {
    "sqlite": """
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :runs - 1)
        INSERT INTO workflow_runs (id, project_id, workflow_id, workflow_version, status,
                                   started_at, updated_at)
        SELECT printf('run-%06d', i),
               CASE WHEN i % 10 = 0 THEN 'proj_0' ELSE printf('proj_%d', 1 + i % 99) END,
               CASE WHEN i % 10 = 0 THEN 'graph-0' ELSE printf('graph-%d', 1 + i % 99) END,
               1,
               CASE WHEN i % 7 = 0 THEN 'running' WHEN i % 97 = 0 THEN 'failed' ELSE 'completed' END,
               strftime('%Y-%m-%dT%H:%M:%f000+00:00', '2026-01-01', printf('+%d seconds', i)),
               strftime('%Y-%m-%dT%H:%M:%f000+00:00', '2026-01-01', printf('+%d seconds', i))
        FROM n""",
    "postgresql": """
        INSERT INTO workflow_runs (id, project_id, workflow_id, workflow_version, status,
                                   started_at, updated_at)
        SELECT format('run-%s', lpad(i::text, 6, '0')),
               CASE WHEN i % 10 = 0 THEN 'proj_0' ELSE 'proj_' || 1 + i % 99 END,
               CASE WHEN i % 10 = 0 THEN 'graph-0' ELSE 'graph-' || 1 + i % 99 END,
               1,
               CASE WHEN i % 7 = 0 THEN 'running' WHEN i % 97 = 0 THEN 'failed' ELSE 'completed' END,
               timestamptz '2026-01-01' + i * interval '1 second',
               timestamptz '2026-01-01' + i * interval '1 second'
        FROM generate_series(0, :runs - 1) AS i""",
}
EXPLAIN = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN (FORMAT JSON) "}


NODES_PER_GRAPH = 2


@pytest.fixture(scope="module", params=DIALECTS)
def planned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkflowStore]:
    """A store over an analysed data set of its own, kept for the whole module."""
    dialect = request.param
    server: PostgresServer | None = None
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'plans.db'}"
    else:
        server = require_pg(request.getfixturevalue("pg_server"))
        name = server.create_database(template=server.template)
        url = server.url_for(name)
    nodes = {"nodes": [{"id": f"n{index}"} for index in range(NODES_PER_GRAPH)]}
    with connect(url) as db:
        upgrade(db)
        store = WorkflowStore(db)
        for project in range(PROJECTS):
            store.ensure_project(f"proj_{project}")
            store.create_graph(WorkflowGraph(f"proj_{project}", "g", nodes, id=f"graph-{project}"))
        with db.writing() as session:
            session.run(LOAD_RUNS[dialect], {"runs": RUNS})  # the trigger adds 2 node states a run
        for index in range(2_000):  # log lines appended to a few hundred nodes, as executors do
            store.append_node_message(
                f"run-{index % 300:06d}", f"n{index % NODES_PER_GRAPH}", f"line {index}"
            )
        with db.writing() as session:
            session.script("ANALYZE")
        yield store
    if server is not None:
        server.drop_database(name)


def recorded_sql(store: WorkflowStore, call: Callable[[], object]) -> tuple[str, Any]:
    """The last statement ``call`` ran through the adapter, with its parameters."""
    seen: list[tuple[str, Any]] = []
    db = store.db
    original = db._read

    def spy(sql: Any, params: Any, fetch: Any) -> Any:
        seen.append((getattr(sql, db.dialect) if isinstance(sql, DialectSQL) else sql, params))
        return original(sql, params, fetch)

    db._read = spy  # type: ignore[method-assign]
    try:
        call()
    finally:
        db._read = original  # type: ignore[method-assign]
    return seen[-1]


def plan_of(store: WorkflowStore, call: Callable[[], object]) -> list[str]:
    """The plan of the statement ``call`` runs, as lines naming scans, indexes and sorts."""
    sql, params = recorded_sql(store, call)
    db = store.db
    with db.reading() as session:
        rows = session.all(EXPLAIN[db.dialect] + sql, params)
    if db.dialect == "sqlite":
        return [row[3] for row in rows]
    return list(_walk(json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]))


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, dict):
        if "Node Type" in node:
            yield f"{node['Node Type']} {node.get('Index Name', '')}".strip()
        for value in node.values():
            if isinstance(value, list | dict):
                yield from _walk(value)


# name: (call, the indexes it may use, whether it is an ordered page that must not sort)
CASES: dict[str, tuple[Callable[[WorkflowStore], object], set[str], bool]] = {
    "newest page": (lambda s: s.list_runs(limit=50), {"workflow_runs_started_idx"}, True),
    "page by project": (
        lambda s: s.list_runs(project_id="proj_0", limit=50),
        {"workflow_runs_project_idx"},
        True,
    ),
    "next page by project": (
        lambda s: s.list_runs(project_id="proj_0", limit=50, after=s.get_run("run-049000")),
        {"workflow_runs_project_idx"},
        True,
    ),
    # after= an id: the cursor's time is a subquery the planner cannot see through,
    # so reading the newest-first index and filtering is as good a plan.
    "next page by project, after an id": (
        lambda s: s.list_runs(project_id="proj_0", limit=50, after="run-049000"),
        {"workflow_runs_project_idx", "workflow_runs_started_idx"},
        True,
    ),
    "page by status": (
        lambda s: s.list_runs(status="running", limit=50),
        {"workflow_runs_status_idx"},
        True,
    ),
    "page by workflow": (
        lambda s: s.list_runs(workflow_id="graph-0", limit=50),
        {"workflow_runs_workflow_idx"},
        True,
    ),
    "page by project and status": (
        lambda s: s.list_runs(project_id="proj_0", status="running", limit=50),
        {"workflow_runs_project_status_idx"},
        True,
    ),
    "all of a small project": (
        lambda s: s.list_runs(project_id="proj_7"),
        {"workflow_runs_project_idx"},
        False,
    ),
    "all of a small workflow": (
        lambda s: s.list_runs(workflow_id="graph-7"),
        {"workflow_runs_workflow_idx"},
        False,
    ),
    "count by project": (
        lambda s: s.count_runs(project_id="proj_7"),
        {"workflow_runs_project_idx", "workflow_runs_project_status_idx"},
        False,
    ),
    "node states of a run": (
        lambda s: s.list_node_states("run-000123"),
        {"workflow_node_states_order_idx"},
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_list_query_uses_its_index(planned: WorkflowStore, case: str) -> None:
    call, indexes, ordered_page = CASES[case]
    plan = plan_of(planned, lambda: call(planned))
    text = "\n".join(plan)
    assert any(index in line for line in plan for index in indexes), text
    if planned.db.dialect == "sqlite":
        # No table read whole ("SCAN (subquery-N)" walks a subquery's own few rows: the appended messages).
        table_scans = [line for line in plan if line.startswith("SCAN") and "INDEX" not in line]
        assert not [line for line in table_scans if not line.startswith("SCAN (subquery")], text
        sorts = [line for line in plan if "TEMP B-TREE" in line]
    else:
        assert not any(line.startswith("Seq Scan") for line in plan), text
        sorts = [line for line in plan if line.startswith(("Sort", "Incremental Sort"))]
    if ordered_page:
        assert sorts == [], text


def test_pages_are_served_in_order(planned: WorkflowStore) -> None:
    """The data set itself: the plans above return what the store promises."""
    page = planned.list_runs(project_id="proj_0", status="running", limit=50)
    assert [r.started_at for r in page] == sorted((r.started_at for r in page), reverse=True)
    assert {(r.project_id, r.status.value) for r in page} == {("proj_0", "running")} and len(page) == 50
    assert [s.node_id for s in planned.list_node_states("run-000123")] == ["n0", "n1"]


def test_the_orphan_claim_reads_its_two_indexes(planned: WorkflowStore) -> None:
    """claim_orphaned_runs: expired leases and unowned stale runs, each found by its index."""
    db = planned.db
    sql = getattr(q.claim_orphaned_runs(("running",), False), db.dialect)
    params = {"owner": "w", "lease_seconds": 60.0, "now": db.encode_time(utc_now()), "limit": 10}
    with db.reading() as session:
        rows = session.all(EXPLAIN[db.dialect] + sql, params)
    if db.dialect == "sqlite":
        plan = [row[3] for row in rows]
        assert not any(line.startswith("SCAN workflow_runs") and "INDEX" not in line for line in plan), plan
    else:
        plan = list(_walk(json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]))
        assert not any(line.startswith("Seq Scan") for line in plan), plan
    text = "\n".join(plan)
    assert "workflow_runs_lease_idx" in text and "workflow_runs_unowned_idx" in text, text


# Every running run held by one of five replicas, as while a service works (inside a transaction
# that the test rolls back, with the statistics it takes).
HOLD_RUNNING_RUNS = {
    "sqlite": """
        UPDATE workflow_runs SET owner = 'replica-' || (CAST(substr(id, 5) AS INTEGER) % 5),
            lease_expires_at = '2027-01-01T00:00:00.000000+00:00', lease_token = 1
        WHERE status = 'running'""",
    "postgresql": """
        UPDATE workflow_runs SET owner = 'replica-' || (substr(id, 5)::int % 5),
            lease_expires_at = timestamptz '2027-01-01', lease_token = 1
        WHERE status = 'running'""",
}


class _RolledBack(Exception):
    """Raised to roll a test's transaction back."""


def test_renewing_leases_finds_each_run_by_its_key(planned: WorkflowStore) -> None:
    """renew_runs: the runs asked for are looked up by primary key, not among every run held."""
    db = planned.db
    sql = getattr(q.RENEW_RUNS.any_project, db.dialect)
    asked = [f"run-{index:06d}" for index in range(0, RUNS, 35)]  # running, held by replica-0
    params = renewal_params(db, asked, "replica-0", 60.0, None)
    with pytest.raises(_RolledBack), db.writing() as session:
        session.run(HOLD_RUNNING_RUNS[db.dialect], {})
        session.script("ANALYZE workflow_runs")
        rows = session.all(EXPLAIN[db.dialect] + sql, params)
        raise _RolledBack
    if db.dialect == "sqlite":
        plan = [row[3] for row in rows]
        assert not any(line.startswith("SCAN workflow_runs") for line in plan), plan
        assert any("USING INDEX sqlite_autoindex_workflow_runs_1" in line for line in plan), plan
    else:
        plan = list(_walk(json.loads(rows[0][0]) if isinstance(rows[0][0], str) else rows[0][0]))
        assert not any(line.startswith("Seq Scan") for line in plan), plan
        assert plan.count("Index Scan workflow_runs_pkey") == 2, plan  # the lock, then the update

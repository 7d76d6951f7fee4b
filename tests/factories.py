"""Small builders shared by the tests."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from workflow_db import Database, WorkflowGraph, WorkflowRun, WorkflowStore

T = TypeVar("T")

SHIPPED_VERSIONS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
"""The migrations sql/ ships, in order."""


def graph_structure(*node_ids: str, **extra: Any) -> dict[str, Any]:
    """A graph with the given nodes chained by edges, plus any extra keys."""
    nodes = [{"id": node_id, "type": "task"} for node_id in node_ids]
    edges = [{"source": a, "target": b} for a, b in itertools.pairwise(node_ids)]
    return {"nodes": nodes, "edges": edges, **extra}


def make_graph(
    store: WorkflowStore, project_id: str = "proj_a", *node_ids: str, name: str = "g"
) -> WorkflowGraph:
    """Create the project if needed and a graph in it with nodes ``node_ids`` (default a, b, c)."""
    store.ensure_project(project_id)
    structure = graph_structure(*(node_ids or ("a", "b", "c")))
    return store.create_graph(WorkflowGraph(project_id, name, structure))


TABLES = (
    "langgraph_writes",
    "langgraph_blobs",
    "langgraph_checkpoints",
    "workflow_changes",
    "workflow_node_messages",
    "workflow_node_states",
    "workflow_runs",
    "workflow_graph_nodes",
    "workflow_graph_versions",
    "workflow_graphs",
    "projects",
)
"""Every table of the schema, children first."""


def empty_database(db: Database) -> None:
    """Delete every row of every table (a state machine's fresh start)."""
    with db.writing() as session:
        for table in TABLES:
            session.run(f"DELETE FROM {table}")


def run_threads(count: int, target: Callable[[int], object]) -> list[BaseException]:
    """Start ``count`` threads at once (behind a barrier); return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        barrier.wait()
        try:
            target(index)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def present(value: T | None) -> T:
    """``value``, failing the test if it is None (a record the store should have found)."""
    assert value is not None, "expected a stored record, got None"
    return value


@contextmanager
def another_connection_holding(db_url: str, run_id: str) -> Iterator[None]:
    """Another connection holds the run: PostgreSQL its row lock, SQLite the file's write lock."""
    holder: Any
    if db_url.startswith("sqlite:"):
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        # Through PgBouncer too, when the env has it (its URL carries our prepare_threshold option).
        holder = psycopg.connect(db_url.partition("?")[0], prepare_threshold=None)
        holder.execute("SELECT 1 FROM workflow_runs WHERE id = %s FOR UPDATE", [run_id])
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


def wait_past(run: WorkflowRun) -> None:
    """Sleep until just after the run's lease expires (bounded by the lease itself)."""
    left = (present(run.lease_expires_at) - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, left) + 0.05)


def orphan(store: WorkflowStore, *run_ids: str, seconds_ago: float = 3600) -> None:
    """Make runs look untouched for a while (what a crashed replica leaves behind)."""
    stale = store.db.encode_time(datetime.now(UTC) - timedelta(seconds=seconds_ago))
    with store.db.writing() as session:
        for run_id in run_ids:
            session.run(
                "UPDATE workflow_runs SET updated_at = :stale WHERE id = :id", {"stale": stale, "id": run_id}
            )


def start_together(script: str, argument_lists: list[list[str]]) -> list[subprocess.Popen[str]]:
    """One ``python -c script`` process per argument list, released at once: each prints ``ready``
    when set up and waits for a line on stdin."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for arguments in argument_lists
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    return processes

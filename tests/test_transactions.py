"""store.transaction() and SPEC.md section 9 (persistence across restarts), on both databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
from factories import another_connection_holding, graph_structure, make_graph, present

from workflow_db import (
    Database,
    DatabaseUnavailableError,
    IntegrityError,
    WorkflowDBError,
    WorkflowGraph,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
)


class Boom(Exception):
    pass


def test_transaction_commits_together(store: WorkflowStore) -> None:
    store.ensure_project("p")
    with store.transaction():
        graph = store.create_graph(WorkflowGraph("p", "g", graph_structure("a")))
        run = store.create_run(graph.id)
        store.set_node_state(run.id, "a", progress=0.5)
        inside = present(store.get_run(run.id))  # reads inside see the transaction's writes
        assert inside.id == run.id and inside.updated_at > run.updated_at  # the node write's heartbeat
    assert present(store.get_node_state(run.id, "a")).progress == 0.5


def test_another_thread_reads_what_is_committed_while_a_transaction_is_open(db: Database) -> None:
    """Reads outside a transaction (SQLite: on the writer's connection when it is idle) never see
    another thread's uncommitted writes, and see them once committed."""
    store = WorkflowStore(db)
    run = store.create_run(make_graph(store).id)
    written, release = threading.Event(), threading.Event()

    def write_then_wait() -> None:
        with store.transaction():
            store.set_node_state(run.id, "a", progress=0.5)
            written.set()
            assert release.wait(30)

    holder = threading.Thread(target=write_then_wait)
    holder.start()
    assert written.wait(30)
    try:
        assert present(store.get_node_state(run.id, "a")).progress == 0.0
    finally:
        release.set()
        holder.join(30)
    assert present(store.get_node_state(run.id, "a")).progress == 0.5


def test_exception_rolls_everything_back(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    with pytest.raises(Boom), store.transaction():
        store.update_run_status(run.id, "running")
        store.create_run(graph.id, id="second")
        store.update_graph(graph.id, name="renamed")
        with store.transaction():  # nested: joins the outer one
            store.set_node_state(run.id, "a", error="x")
        raise Boom
    assert store.get_run(run.id) == run
    assert store.get_run("second") is None
    assert store.get_graph(graph.id) == graph
    assert present(store.get_node_state(run.id, "a")).status is WorkflowNodeStatus.PENDING


def test_failed_call_inside_transaction_writes_nothing_of_its_own(store: WorkflowStore) -> None:
    graph = make_graph(store)
    with store.transaction():
        run = store.create_run(graph.id)
        with pytest.raises(IntegrityError):
            store.create_run(graph.id, id=run.id)
        store.update_run_status(run.id, "running")
    assert present(store.get_run(run.id)).status is WorkflowRunStatus.RUNNING
    assert store.count_runs() == 1


def test_a_refused_create_run_leaves_the_transaction_going(store: WorkflowStore) -> None:
    """create_run of an unknown graph or a taken id writes nothing, inside a transaction too."""
    graph = make_graph(store)
    with store.transaction():
        run = store.create_run(graph.id, id="r1")
        with pytest.raises(IntegrityError, match=r"^workflow_id: no graph 'nope'$"):
            store.create_run("nope")
        with pytest.raises(IntegrityError, match=r"^id: a run 'r1' already exists$"):
            store.create_run(graph.id, id="r1")
        store.set_node_state(run.id, "a", progress=0.5)
    assert present(store.get_node_state(run.id, "a")).progress == 0.5
    assert store.count_runs() == 1


def test_a_lock_wait_past_the_timeout_inside_a_transaction_ends_it(pg_urls: tuple[str, str]) -> None:
    """A single-statement call has no savepoint of its own (a statement writes all or nothing):
    when PostgreSQL gives up on it, the transaction can only roll back, and says so. (SQLite's
    transaction holds the file's write lock from its start: it never waits inside.)"""
    db_url, _ = pg_urls
    with connect(db_url) as db:
        store = WorkflowStore(db)
        run = store.create_run(make_graph(store, "p", "a").id)
        other = store.create_run(run.workflow_id)
    with connect(db_url, timeout=0.5) as db:
        store = WorkflowStore(db)
        with (
            another_connection_holding(db_url, run.id),
            pytest.raises(WorkflowDBError, match="can only be rolled back"),
            store.transaction(),
        ):
            store.update_run_status(other.id, "running")
            with pytest.raises(DatabaseUnavailableError, match=r"timeout of 0\.5 s"):
                store.set_node_state(run.id, "a", progress=0.5)
            store.set_node_state(other.id, "a", progress=0.5)
        assert present(store.get_run(other.id)).status is WorkflowRunStatus.PENDING  # all rolled back
        assert present(store.get_node_state(other.id, "a")).progress == 0.0


def test_restart_keeps_everything(db_url: str) -> None:
    """A second process sees what the first wrote and continues the run."""
    with connect(db_url) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a", "b")
        run = store.create_run(graph.id, {"n": 1})
        store.update_run_status(run.id, "running", last_message="halfway")
        store.set_node_state(run.id, "a", status="completed", progress=1.0, messages=["ok"])
        store.set_node_state(run.id, "b", progress=0.4)
    script = textwrap.dedent(
        f"""
        import sys
        from workflow_db import WorkflowStore, connect
        with connect({db_url!r}) as db:
            store = WorkflowStore(db)
            run = store.get_run({run.id!r})
            assert run.status.value == "running" and run.last_message == "halfway", run
            assert run.input == {{"n": 1}}
            states = {{s.node_id: s for s in store.list_node_states(run.id)}}
            assert states["a"].status.value == "completed" and states["a"].messages == ["ok"]
            assert states["b"].progress == 0.4 and states["b"].status.value == "running"
            graph = store.get_graph({graph.id!r})
            assert [n["id"] for n in graph.graph["nodes"]] == ["a", "b"]
            store.set_node_state(run.id, "b", status="completed", progress=1.0)
            store.update_run_status(run.id, "completed")
            store.create_run(graph.id, id="after-restart")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with connect(db_url) as db:
        store = WorkflowStore(db)
        assert present(store.get_run(run.id)).status is WorkflowRunStatus.COMPLETED
        assert present(store.get_node_state(run.id, "b")).status is WorkflowNodeStatus.COMPLETED
        assert store.get_run("after-restart") is not None

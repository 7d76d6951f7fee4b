"""SPEC.md section 6: concurrent operations with real threads (and processes), on both databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from factories import another_connection_holding, make_graph, present, run_threads

from workflow_db import (
    ConflictError,
    DatabaseUnavailableError,
    IntegrityError,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
)
from workflow_db.migrate import upgrade

TERMINAL = {"completed", "failed", "cancelled"}


def test_hundred_runs_created_at_once(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a", "b", "c")
    created: list[str] = []
    errors = run_threads(100, lambda _: created.append(store.create_run(graph.id, {"n": 1}).id))
    assert errors == []
    assert len(created) == len(set(created)) == 100
    assert store.count_runs() == 100
    for run_id in created:
        assert [s.node_id for s in store.list_node_states(run_id)] == ["a", "b", "c"]


def test_twenty_threads_drive_their_own_nodes(store: WorkflowStore) -> None:
    nodes = [f"node-{index:02d}" for index in range(20)]
    graph = make_graph(store, "p", *nodes)
    run = store.create_run(graph.id, status="running")

    def drive(index: int) -> None:
        for step in range(1, 11):
            store.set_node_state(run.id, nodes[index], progress=step / 10)
        store.append_node_message(run.id, nodes[index], "done")
        store.set_node_state(run.id, nodes[index], status="completed")

    assert run_threads(20, drive) == []
    states = store.list_node_states(run.id)
    assert [s.node_id for s in states] == nodes
    for state in states:
        assert (state.status, state.progress, state.messages) == (WorkflowNodeStatus.COMPLETED, 1.0, ["done"])
        assert present(state.completed_at) >= present(state.started_at)


def test_sixteen_threads_update_one_run_status(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    statuses = ["running", "completed", "failed", "cancelled"]
    stop = threading.Event()
    torn: list[object] = []

    def write(index: int) -> None:
        for round_ in range(10):
            status = statuses[(index + round_) % 4]
            store.update_run_status(run.id, status, last_message=f"{status}:{index}:{round_}")

    def check_consistent() -> None:
        while not stop.is_set():
            seen = present(store.get_run(run.id))
            if seen.last_message is not None and seen.last_message.split(":")[0] != seen.status.value:
                torn.append(seen)
            if (seen.status.value in TERMINAL) != (seen.finished_at is not None):
                torn.append(seen)

    reader = threading.Thread(target=check_consistent)
    reader.start()
    errors = run_threads(16, write)
    stop.set()
    reader.join()
    assert errors == [] and torn == []
    final = present(store.get_run(run.id))
    assert present(final.last_message).split(":")[0] == final.status.value  # the last write won, whole
    assert final.updated_at > run.updated_at


def test_eighty_concurrent_appends_all_survive(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a")
    run = store.create_run(graph.id)
    assert run_threads(80, lambda index: store.append_node_message(run.id, "a", f"line {index}")) == []
    messages = present(store.get_node_state(run.id, "a")).messages
    assert sorted(messages) == sorted(f"line {index}" for index in range(80))


def test_compare_and_set_lets_exactly_one_winner_through(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    winners: list[int] = []
    conflicts: list[int] = []

    def claim(index: int) -> None:
        try:
            store.update_run_status(
                run.id, "running", expected_status="pending", last_message=f"worker {index}"
            )
            winners.append(index)
        except ConflictError:
            conflicts.append(index)

    assert run_threads(24, claim) == []
    assert len(winners) == 1 and len(conflicts) == 23
    final = present(store.get_run(run.id))
    assert final.status is WorkflowRunStatus.RUNNING and final.last_message == f"worker {winners[0]}"


def test_concurrent_transactions_stay_whole(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a")

    def create_with_state(index: int) -> None:
        with store.transaction():
            run = store.create_run(graph.id, id=f"tx-{index:02d}")
            store.set_node_state(run.id, "a", status="completed", progress=1.0)
            store.update_run_status(run.id, "completed")

    assert run_threads(12, create_with_state) == []
    runs = store.list_runs()
    assert len(runs) == 12 and {r.status for r in runs} == {WorkflowRunStatus.COMPLETED}
    assert all(present(store.get_node_state(r.id, "a")).status is WorkflowNodeStatus.COMPLETED for r in runs)


WRITER_PROCESS = textwrap.dedent(
    """
    import sys
    from workflow_db import WorkflowStore, connect
    url, graph_id, worker = sys.argv[1], sys.argv[2], sys.argv[3]
    with connect(url) as db:
        store = WorkflowStore(db)
        for index in range(40):
            run = store.create_run(graph_id, id=f"{worker}-{index}")
            store.set_node_state(run.id, "a", progress=0.5)
            store.append_node_message(run.id, "a", "from " + worker)
            store.update_run_status(run.id, "completed")
    """
)


def test_several_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with connect(url) as db:
        upgrade(db)
        graph = make_graph(WorkflowStore(db), "p", "a")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_PROCESS, url, graph.id, f"w{n}"], stderr=subprocess.PIPE, text=True
        )
        for n in range(4)
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    with connect(url) as db:
        store = WorkflowStore(db)
        assert store.count_runs(status="completed") == 160
        assert {len(present(store.get_node_state(r.id, "a")).messages) for r in store.list_runs()} == {1}


@pytest.mark.parametrize("threads", [8])
def test_readers_never_see_half_a_transaction(store: WorkflowStore, threads: int) -> None:
    graph = make_graph(store, "p", "a", "b")
    run = store.create_run(graph.id)
    stop = threading.Event()
    seen_partial: list[tuple[str, str]] = []

    def flip(index: int) -> None:
        for round_ in range(15):
            status = "completed" if (index + round_) % 2 else "running"
            with store.transaction():
                store.set_node_state(run.id, "a", status=status)
                store.set_node_state(run.id, "b", status=status)

    def watch() -> None:
        while not stop.is_set():
            a, b = store.list_node_states(run.id)
            if a.status != b.status:
                seen_partial.append((a.status.value, b.status.value))

    watcher = threading.Thread(target=watch)
    watcher.start()
    errors = run_threads(threads, flip)
    stop.set()
    watcher.join()
    assert errors == [] and seen_partial == []


def test_cascade_delete_racing_create_run_always_wins(store: WorkflowStore) -> None:
    """200 races: the delete never refuses, and leaves no graph, run or node state behind."""
    refused: list[BaseException] = []
    for race in range(200):
        graph = make_graph(store, "p", "a", "b", name=f"race-{race}")
        outcomes: dict[str, object] = {}

        def racer(index: int, graph_id: str = graph.id, outcomes: dict[str, object] = outcomes) -> None:
            if index == 0:
                outcomes["deleted"] = store.delete_graph(graph_id, cascade=True)
            else:
                try:
                    outcomes["run"] = store.create_run(graph_id)
                except IntegrityError as exc:  # the graph was gone first: as for any unknown graph
                    assert "workflow_id: no graph" in str(exc)

        refused += run_threads(2, racer)
        assert outcomes.get("deleted") is True
        assert store.get_graph(graph.id) is None and store.count_runs(workflow_id=graph.id) == 0
    assert refused == []
    with store.db.reading() as session:
        assert session.one("SELECT count(*) FROM workflow_node_states") == (0,)  # no orphans


def test_sqlite_writers_of_one_process_wait_at_most_the_timeout(tmp_path: Path) -> None:
    """SQLite only: its in-process writer lock is ours (PostgreSQL's row locks: test_faults.py)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    with connect(url) as db:
        upgrade(db)
    with connect(url, timeout=0.3) as db:
        store = WorkflowStore(db)
        graph = make_graph(store)
        holding, release = threading.Event(), threading.Event()

        def hold_the_writer() -> None:
            with store.transaction():
                store.ensure_project("held")
                holding.set()
                release.wait(30)  # released by the test below, long before this

        holder = threading.Thread(target=hold_the_writer)
        holder.start()
        holding.wait(30)
        try:
            with pytest.raises(DatabaseUnavailableError, match="another thread of this process"):
                store.create_run(graph.id)
            errors = run_threads(20, lambda _: store.ensure_project("queued"))
            assert len(errors) == 20 and all(isinstance(e, DatabaseUnavailableError) for e in errors)
        finally:
            release.set()
            holder.join()
        assert store.count_runs() == 0 and store.get_project("queued") is None
        assert store.create_run(graph.id).workflow_id == graph.id  # works again once the writer is free


def test_a_write_behind_another_transactions_lock_waits_at_most_the_timeout(db_url: str) -> None:
    """Another connection holds the run (PostgreSQL: its row; SQLite: the file's write lock)."""
    with connect(db_url) as db:
        store = WorkflowStore(db)
        run = store.create_run(make_graph(store, "p", "a").id)
    with another_connection_holding(db_url, run.id), connect(db_url, timeout=0.5) as db:
        store = WorkflowStore(db)
        for call in (
            lambda: store.update_run_status(run.id, "running"),
            lambda: store.set_node_state(run.id, "a", progress=0.5),  # its heartbeat waits for the run
            lambda: store.append_node_message(run.id, "a", "m"),
        ):
            with pytest.raises(DatabaseUnavailableError, match=r"timeout of 0\.5 s"):
                call()
        assert present(store.get_run(run.id)).status.value == "pending"  # reads do not wait
    with connect(db_url) as db:
        store = WorkflowStore(db)
        assert present(store.update_run_status(run.id, "running")).status.value == "running"
        assert present(store.get_node_state(run.id, "a")).progress == 0.0  # the refused writes left nothing

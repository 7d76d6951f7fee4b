"""The change feed: list_changes and watch, on both databases and both stores."""

from __future__ import annotations

import queue
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from blocking import BlockingStore, LoopThread
from factories import make_graph, present, run_threads

from workflow_db import (
    AsyncWorkflowStore,
    Change,
    DatabaseUnavailableError,
    IntegrityError,
    ValidationError,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
    connect_async,
)
from workflow_db.dialects.base import Database, fetch_one

ROOT = Path(__file__).resolve().parent.parent
View = dict[tuple[str, str | None], Change]


def _key(change: Change) -> tuple[str, str | None]:
    return change.run_id, change.node_id


def _read_all(store: WorkflowStore, after: int | None = None, **filters: Any) -> list[Change]:
    """Every change after ``after``, a small page at a time (as a reader that resumes does)."""
    found: list[Change] = []
    while page := store.list_changes(after, limit=3, **filters):
        found += page
        after = page[-1].seq
    return found


def _states(store: WorkflowStore, run_id: str) -> dict[str | None, tuple[str, float]]:
    """The database's view of a run: its status and its node states' (status, progress)."""
    run = present(store.get_run(run_id))
    view: dict[str | None, tuple[str, float]] = {None: (run.status.value, 0.0)}
    for node in store.list_node_states(run_id):
        view[node.node_id] = (node.status.value, node.progress)
    return view


def _view_of(changes: View, run_id: str) -> dict[str | None, tuple[str, float]]:
    view: dict[str | None, tuple[str, float]] = {}
    for (run, node), change in changes.items():
        if run != run_id:
            continue
        if change.kind == "run":
            view[None] = (present(change.run).status.value, 0.0)
        else:
            state = present(change.node_state)
            view[node] = (state.status.value, state.progress)
    return view


# -- list_changes -------------------------------------------------------------------------


def test_a_new_run_and_its_node_states_are_changes_then_each_write(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a", "a", "b")
    run = store.create_run(graph.id, {"n": 1}, id="run-1")
    created = store.list_changes()
    assert sorted((c.kind, c.node_id) for c in created) == [
        ("node_state", "a"),
        ("node_state", "b"),
        ("run", None),
    ]
    assert all(c.project_id == "proj_a" and c.run_id == run.id for c in created)
    assert present(next(c for c in created if c.kind == "run").run).input == {"n": 1}
    assert [c.seq for c in created] == sorted(c.seq for c in created)

    state = store.set_node_state(run.id, "b", status="running", progress=0.25)
    (change,) = store.list_changes(created[-1].seq)
    assert (change.kind, change.node_id, change.run) == ("node_state", "b", None)
    assert change.node_state == state
    assert change.seq > created[-1].seq
    finished = store.update_run_status(run.id, "completed", output={"ok": True})
    (change,) = store.list_changes(change.seq)
    assert (change.kind, change.node_id, change.node_state, change.run) == ("run", None, None, finished)


def test_each_object_comes_once_as_it_is_now(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a", "a", "b")
    run = store.create_run(graph.id)
    start = store.list_changes()[-1].seq
    for progress in (0.1, 0.2, 0.3):
        store.set_node_state(run.id, "a", status="running", progress=progress)
    store.append_node_message(run.id, "a", "log line")
    store.set_node_state(run.id, "b", progress=0.5)
    changes = store.list_changes(start)
    assert [c.node_id for c in changes] == ["a", "b"]
    assert present(changes[0].node_state).progress == 0.3
    assert present(changes[0].node_state).messages == ["log line"]


def test_a_reader_resuming_from_its_last_seq_gets_every_object_once(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a", "a", "b", "c")
    runs = [store.create_run(graph.id).id for _ in range(4)]
    everything = _read_all(store)
    assert len(everything) == 16 and len({_key(c) for c in everything}) == 16
    assert [c.seq for c in everything] == sorted({c.seq for c in everything})
    cursor = everything[-1].seq
    assert store.list_changes(cursor) == []
    store.set_node_state(runs[0], "c", status="failed", error="boom")
    store.update_run_status(runs[3], "running")
    later = _read_all(store, cursor)
    assert [_key(c) for c in later] == [(runs[0], "c"), (runs[3], None)]
    assert present(later[0].node_state).error == "boom"


def test_project_and_run_filters(store: WorkflowStore) -> None:
    first = store.create_run(make_graph(store, "proj_a", "a").id, id="run-a")
    other = store.create_run(make_graph(store, "proj_a", "x", name="g2").id, id="run-a2")
    store.create_run(make_graph(store, "proj_b", "a").id, id="run-b")
    assert {c.run_id for c in store.list_changes(project_id="proj_a")} == {first.id, other.id}
    assert {c.project_id for c in store.list_changes(project_id="proj_b")} == {"proj_b"}
    assert {_key(c) for c in store.list_changes(run_id="run-a")} == {("run-a", None), ("run-a", "a")}
    assert {c.run_id for c in store.list_changes(project_id="proj_a", run_id="run-a")} == {"run-a"}
    # The filters are a scope: another project's run is not there at all.
    assert store.list_changes(project_id="proj_a", run_id="run-b") == []
    assert store.list_changes(project_id="no_such_project") == []
    store.set_node_state("run-b", "a", progress=0.5)
    head = store.list_changes()[-1].seq
    assert store.list_changes(head - 1, project_id="proj_a") == []


def test_a_node_heartbeat_is_not_a_change_of_its_run(store: WorkflowStore) -> None:
    run = store.create_run(make_graph(store).id)
    start = store.list_changes()[-1].seq
    store.set_node_state(run.id, "a", status="running")
    assert [c.kind for c in store.list_changes(start)] == ["node_state"]
    # ...though the run's updated_at moved, as the run read from the feed shows later.
    store.update_run_status(run.id, "running")
    (_, run_change) = store.list_changes(start)
    assert present(run_change.run).updated_at == present(store.get_run(run.id)).updated_at


def test_a_node_state_written_outside_the_store_is_a_change_and_a_heartbeat(
    store: WorkflowStore, db: Database
) -> None:
    """On PostgreSQL the store's node writes file their change and heartbeat in their own statement
    (schema 11); a trigger still does both for any other writer: raw SQL, an update and an insert."""
    run = store.create_run(make_graph(store).id)
    store.set_node_state(run.id, "a", progress=0.1)  # a store write first: the row says it filed itself
    start = store.list_changes()[-1].seq
    later = present(store.get_run(run.id)).updated_at + timedelta(seconds=5)
    with db.writing() as session:
        session.run(
            "UPDATE workflow_node_states SET progress = 0.5, updated_at = :at "
            "WHERE run_id = :run AND node_id = 'a'",
            {"at": db.encode_time(later), "run": run.id},
        )
        session.run(
            "INSERT INTO workflow_node_states (run_id, node_id, position, status, updated_at) "
            "VALUES (:run, 'extra', 9, 'running', :at)",
            {"at": db.encode_time(later + timedelta(seconds=1)), "run": run.id},
        )
    changes = store.list_changes(start)
    assert [(c.node_id, present(c.node_state).progress) for c in changes] == [("a", 0.5), ("extra", 0.0)]
    assert present(store.get_run(run.id)).updated_at == later + timedelta(seconds=1)
    # And the store's next write of that node is one change again, not two.
    store.set_node_state(run.id, "a", progress=0.7)
    assert [c.node_id for c in store.list_changes(changes[-1].seq)] == ["a"]


def test_the_schema_refuses_what_the_store_never_writes(store: WorkflowStore, db: Database) -> None:
    """The checks on statuses, progress and message lists hold for raw SQL too (on PostgreSQL they
    are domains since schema 11), and a refused statement writes nothing."""
    run = store.create_run(make_graph(store).id)
    start = store.list_changes()[-1].seq
    for assignment in ("status = 'bogus'", "progress = 1.5", "messages_json = '{}'"):
        with pytest.raises(IntegrityError), db.writing() as session:
            session.run(f"UPDATE workflow_node_states SET {assignment} WHERE run_id = :run", {"run": run.id})
    with pytest.raises(IntegrityError), db.writing() as session:
        session.run("UPDATE workflow_runs SET status = 'bogus' WHERE id = :run", {"run": run.id})
    assert store.list_changes(start) == []
    assert {(n.status.value, n.progress) for n in store.list_node_states(run.id)} == {("pending", 0.0)}


def test_deleted_runs_and_their_node_states_leave_the_feed(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a", "a")
    kept = store.create_run(make_graph(store, "proj_a", "k", name="kept").id)
    old = store.create_run(graph.id, status="completed")
    store.create_run(graph.id)
    assert store.prune_runs(datetime.now(UTC) + timedelta(seconds=1), project_id="proj_a") == 1
    assert old.id not in {c.run_id for c in store.list_changes()}
    assert store.delete_graph(graph.id, cascade=True)
    assert {c.run_id for c in store.list_changes()} == {kept.id}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"after": -1}, "after"),
        ({"after": True}, "after"),
        ({"after": "7"}, "after"),
        ({"after": 2**63}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": None}, "limit"),
        ({"project_id": 7}, "project_id"),
        ({"run_id": "x" * 300}, "run_id"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(
    store: WorkflowStore, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=f"^{field}: "):
        store.list_changes(**arguments)
    if field != "limit":  # watch reads in pages of its own
        with pytest.raises(ValidationError, match=f"^{field}: "):
            next(iter(store.watch(**arguments, timeout=1)))


@pytest.mark.parametrize("timeout", [0, -1, True, "1"])
def test_watch_refuses_a_bad_timeout(store: WorkflowStore, timeout: object) -> None:
    with pytest.raises(ValidationError, match=r"^timeout: "):
        next(iter(store.watch(timeout=timeout)))  # type: ignore[arg-type]


# -- commit order -------------------------------------------------------------------------


def test_a_transaction_that_started_first_and_commits_last_is_not_skipped(
    store: WorkflowStore, dialect: str
) -> None:
    """The trap of a feed numbered at write time: T1 writes, T2 writes and commits, a reader
    reads T2's change and moves its cursor past it, then T1 commits. (Two runs: writes of
    one run's node states wait for each other, as each moves the run's updated_at.)"""
    graph = make_graph(store, "proj_a", "x", "y")
    run, other = store.create_run(graph.id), store.create_run(graph.id)
    cursor = store.list_changes()[-1].seq
    wrote, release = threading.Event(), threading.Event()

    def first() -> None:
        with store.transaction():
            store.set_node_state(run.id, "x", status="running", progress=0.5)
            wrote.set()
            assert release.wait(30)

    def second() -> None:
        store.set_node_state(other.id, "y", status="completed")

    t1 = threading.Thread(target=first)
    t1.start()
    assert wrote.wait(30)
    t2 = threading.Thread(target=second)
    t2.start()
    if dialect == "postgresql":  # SQLite's second writer waits for the first to commit
        t2.join()
    seen = store.list_changes(cursor)
    assert "x" not in {c.node_id for c in seen}  # not committed yet
    if seen:
        cursor = seen[-1].seq
    release.set()
    t1.join()
    t2.join()
    seen += store.list_changes(cursor)
    assert {c.node_id for c in seen} == {"x", "y"}
    assert present(next(c for c in seen if c.node_id == "x").node_state).progress == 0.5


def test_concurrent_writers_and_a_polling_reader_agree_with_the_database(store: WorkflowStore) -> None:
    """Writers in transactions of 1-3 writes to one run, every fourth held open until the reader
    has read twice; the reader polls with its cursor throughout. At the end its view is the
    database."""
    graph = make_graph(store, "proj_a", "a", "b", "c", "d")
    runs = [store.create_run(graph.id).id for _ in range(3)]
    view: View = {}
    polls = 0
    polled = threading.Condition()
    done = threading.Event()
    seqs: list[int] = []

    def poll(after: int | None) -> int | None:
        nonlocal polls
        for change in store.list_changes(after, limit=7):
            view[_key(change)] = change
            seqs.append(change.seq)
            after = change.seq
        with polled:
            polls += 1
            polled.notify_all()
        return after

    def reader() -> None:
        cursor = None
        while not done.is_set():
            cursor = poll(cursor)
        while (after := poll(cursor)) != cursor:
            cursor = after

    def writer(index: int) -> None:
        chosen = random.Random(index)
        for step in range(12):
            run = chosen.choice(runs)
            with store.transaction():
                for _ in range(chosen.randint(1, 3)):
                    status = chosen.choice([WorkflowNodeStatus.RUNNING, WorkflowNodeStatus.COMPLETED])
                    store.set_node_state(run, chosen.choice("abcd"), status=status, progress=chosen.random())
                if chosen.random() < 0.2:
                    store.update_run_status(
                        run, chosen.choice([WorkflowRunStatus.PENDING, WorkflowRunStatus.RUNNING])
                    )
                if step % 4 == index % 4:  # held open while the reader reads twice
                    with polled:
                        target = polls + 2
                        assert polled.wait_for(lambda target=target: polls >= target, 30)  # type: ignore[misc]

    reading = threading.Thread(target=reader)
    reading.start()
    try:
        assert run_threads(4, writer) == []
    finally:
        done.set()
        reading.join()
    assert seqs == sorted(set(seqs))
    for run in runs:
        assert _view_of(view, run) == _states(store, run)


# -- watch ---------------------------------------------------------------------------------


def _watch_in_thread(
    store: WorkflowStore, **arguments: Any
) -> tuple[queue.Queue[Change | None], threading.Thread]:
    """Watch in a thread of its own; its changes arrive in the queue, then None when it ends."""
    found: queue.Queue[Change | None] = queue.Queue()

    def watch() -> None:
        try:
            for change in store.watch(**arguments):
                found.put(change)
        finally:
            found.put(None)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return found, thread


def _next(found: queue.Queue[Change | None]) -> Change:
    change = found.get(timeout=30)
    assert change is not None, "the watcher ended"
    return change


def test_watch_gives_the_feed_then_each_change_as_it_commits(store: WorkflowStore) -> None:
    run = store.create_run(make_graph(store, "proj_a", "a").id)
    existing = store.list_changes()
    found, _ = _watch_in_thread(store, timeout=30)
    assert [_next(found) for _ in existing] == existing
    state = store.set_node_state(run.id, "a", status="running", progress=0.5)
    change = _next(found)
    assert (change.node_id, change.node_state) == ("a", state)
    with store.transaction():
        store.set_node_state(run.id, "a", progress=0.75)
        finished = store.update_run_status(run.id, "completed")
    later = [_next(found), _next(found)]
    assert sorted((c.kind, c.seq > change.seq) for c in later) == [("node_state", True), ("run", True)]
    assert next(c for c in later if c.kind == "run").run == finished
    assert found.empty()


def test_watch_resumes_after_a_seq_and_keeps_to_its_filters(store: WorkflowStore) -> None:
    mine = store.create_run(make_graph(store, "proj_a", "a", "b").id)
    other = store.create_run(make_graph(store, "proj_b", "a").id)
    cursor = store.list_changes()[-1].seq
    found, _ = _watch_in_thread(store, after=cursor, project_id="proj_a", run_id=mine.id, timeout=30)
    for _ in range(3):
        store.set_node_state(other.id, "a", progress=0.5)
    store.set_node_state(mine.id, "b", progress=0.5)
    change = _next(found)
    assert (change.run_id, change.node_id) == (mine.id, "b")
    store.update_run_status(other.id, "running")
    store.update_run_status(mine.id, "running")
    assert _key(_next(found)) == (mine.id, None)


def test_watch_ends_after_its_timeout_without_a_change(store: WorkflowStore) -> None:
    store.create_run(make_graph(store).id)
    cursor = store.list_changes()[-1].seq
    assert list(store.watch(cursor, timeout=0.2)) == []
    store.ensure_project("proj_c")  # a write that is no change of a run or node state
    assert list(store.watch(cursor, timeout=0.2)) == []


def test_many_watchers_of_one_database_each_get_every_change(store: WorkflowStore) -> None:
    run = store.create_run(make_graph(store, "proj_a", "a", "b").id)
    cursor = store.list_changes()[-1].seq
    watchers = [_watch_in_thread(store, after=cursor, timeout=30)[0] for _ in range(8)]
    for progress in (0.25, 0.5):
        store.set_node_state(run.id, "a", progress=progress)
        store.set_node_state(run.id, "b", progress=progress)
    for found in watchers:
        latest: dict[str | None, float] = {}
        while latest != {"a": 0.5, "b": 0.5}:
            change = _next(found)
            latest[change.node_id] = present(change.node_state).progress


def test_closing_the_database_ends_its_watchers(db_url: str, open_store: OpenStore) -> None:
    store = open_store(db_url)
    store.create_run(make_graph(store).id)
    found, thread = _watch_in_thread(store)  # no timeout: only the close can end it
    assert _next(found).kind in ("run", "node_state")
    if isinstance(store, BlockingStore):
        store.close_database()
    else:
        store.db.close()
    thread.join(30)
    assert not thread.is_alive()


def test_a_call_after_the_close_is_refused(db_url: str, open_store: OpenStore) -> None:
    """Reads, writes and the feed after the database closed: DatabaseUnavailableError saying so
    (no driver error, and never a call left waiting for an answer)."""
    store = open_store(db_url)
    run_id = store.create_run(make_graph(store).id).id
    if isinstance(store, BlockingStore):
        store.close_database()
    else:
        store.db.close()
    for call in (
        lambda: store.get_run(run_id),
        lambda: store.set_node_state(run_id, "a", progress=0.5),
        store.list_changes,
    ):
        with pytest.raises(DatabaseUnavailableError, match="closed"):
            call()


_WRITE_ONCE = """
import sys
from workflow_db import WorkflowStore, connect
url, run_id = sys.argv[1], sys.argv[2]
with connect(url) as db:
    WorkflowStore(db).set_node_state(run_id, "a", status="completed", progress=1.0)
"""


def _write_in_another_process(url: str, run_id: str) -> None:
    subprocess.run([sys.executable, "-c", _WRITE_ONCE, url, run_id], check=True, cwd=ROOT, timeout=60)


def test_a_change_committed_in_another_process_reaches_a_watcher(store: WorkflowStore, db_url: str) -> None:
    """Without LISTEN (SQLite, or PostgreSQL through PgBouncer) the watcher polls the feed."""
    run = store.create_run(make_graph(store, "proj_a", "a").id)
    cursor = store.list_changes()[-1].seq
    found, _ = _watch_in_thread(store, after=cursor, timeout=30)
    _write_in_another_process(db_url, run.id)
    change = _next(found)
    assert (change.node_id, present(change.node_state).status) == ("a", WorkflowNodeStatus.COMPLETED)


# -- LISTEN / NOTIFY (PostgreSQL) -----------------------------------------------------------


OpenStore = Callable[..., WorkflowStore]


@pytest.fixture
def open_store(store_kind: str) -> Iterator[OpenStore]:
    """``open_store(url, **connect_options)``: a store of the test's kind on a connection of its own."""
    closers: list[Callable[[], None]] = []

    def open_one(url: str, **options: Any) -> WorkflowStore:
        if store_kind == "sync":
            db = connect(url, **options)
            closers.append(db.close)
            return WorkflowStore(db)
        loop = LoopThread()
        async_db = loop.run(_connect_async(url, options))

        def close() -> None:
            loop.run(async_db.close())
            loop.close()

        closers.append(close)
        return cast(WorkflowStore, BlockingStore(AsyncWorkflowStore(async_db), loop, connect(url)))

    yield open_one
    for close in reversed(closers):
        close()


async def _connect_async(url: str, options: dict[str, Any]) -> Any:
    return await connect_async(url, **options)


def _listener_pid(admin: psycopg.Connection[Any]) -> int | None:
    row = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'workflow_db listen'"
    ).fetchone()
    return None if row is None else int(row[0])


def _wait_for(condition: Callable[[], bool]) -> None:
    """Wait (at most 30 s) for a condition another thread or process brings about."""
    event = threading.Event()
    for _ in range(3000):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("the condition did not come about within 30 s")


def test_notify_wakes_a_watcher_at_once_and_a_dropped_listener_reconnects(
    pg_urls: tuple[str, str], open_store: OpenStore
) -> None:
    """A poll interval of an hour: only NOTIFY (and the reconnection's wake-up) can deliver."""
    db_url, direct_url = pg_urls
    store = open_store(db_url, listen_url=direct_url, poll_interval=3600)
    run = store.create_run(make_graph(store, "proj_a", "a").id)
    cursor = store.list_changes()[-1].seq
    found, _ = _watch_in_thread(store, after=cursor, timeout=600)
    with psycopg.connect(direct_url, autocommit=True) as admin:
        _wait_for(lambda: _listener_pid(admin) is not None)
        _write_in_another_process(db_url, run.id)
        assert present(_next(found).node_state).status == WorkflowNodeStatus.COMPLETED
        # The listener's connection dies; a change commits meanwhile; the watcher still gets it.
        dropped = _listener_pid(admin)
        admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
        with connect(db_url) as other:
            WorkflowStore(other).set_node_state(run.id, "a", progress=0.5)
        assert present(_next(found).node_state).progress == 0.5
        _wait_for(lambda: _listener_pid(admin) not in (None, dropped))
        _write_in_another_process(db_url, run.id)
        assert present(_next(found).node_state).progress == 1.0


def test_a_watcher_resumes_after_its_database_connections_die(
    pg_urls: tuple[str, str], open_store: OpenStore
) -> None:
    db_url, direct_url = pg_urls
    store = open_store(db_url, poll_interval=0.05)
    run = store.create_run(make_graph(store, "proj_a", "a").id)
    cursor = store.list_changes()[-1].seq
    found, _ = _watch_in_thread(store, after=cursor, timeout=600)
    with psycopg.connect(direct_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    _write_in_another_process(db_url, run.id)
    assert present(_next(found).node_state).status == WorkflowNodeStatus.COMPLETED


def test_a_new_run_looks_its_runs_up_by_key_on_a_new_database(pg_urls: tuple[str, str]) -> None:
    """Schema 7: a backend keeps the feed trigger's plan, so the plan it makes while
    workflow_runs is new and unanalysed must not scan every run (schema 6's join did)."""
    db_url, _ = pg_urls
    with connect(db_url) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "proj_a", *(f"n{index}" for index in range(10)))
        with store.transaction():
            store.create_run(graph.id)
            row = db.read(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'workflow_runs'", {}, fetch_one
            )
    assert row is not None
    assert row[0] == 0


def test_listen_url_must_be_a_postgresql_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="listen_url: only for PostgreSQL"):
        connect(f"sqlite:///{tmp_path / 'x.db'}", listen_url="postgresql://u@h/db")
    with pytest.raises(ValueError, match="listen_url: expected a postgresql:// URL") as refused:
        connect("postgresql://u@127.0.0.1:1/db", listen_url="mysql://u:secret@h/db")
    assert "secret" not in str(refused.value)
    with pytest.raises(ValueError, match="poll_interval: expected a positive number"):
        connect(f"sqlite:///{tmp_path / 'x.db'}", poll_interval=0)


def test_writers_queue_no_notification_the_process_announces_after_commit(
    pg_urls: tuple[str, str], open_store: OpenStore
) -> None:
    """Schema 8: a transaction that queued a NOTIFY commits under a database-wide lock, after every
    other such transaction; so no writer's transaction notifies: the feed's triggers are quiet and
    the writing process announces its commits from a connection of its own."""
    db_url, direct_url = pg_urls
    store = open_store(db_url, poll_interval=3600)
    run = store.create_run(make_graph(store, "proj_a", "a").id)
    with (
        psycopg.connect(direct_url, autocommit=True) as listener,
        psycopg.connect(direct_url, autocommit=True) as writer,
    ):
        listener.execute("LISTEN workflow_changes")
        # A write that fires every feed trigger, then a marker from the same backend: NOTIFY
        # is delivered in commit order, so a trigger's notification would come first.
        writer.execute(
            "UPDATE workflow_node_states SET progress = 0.3, updated_at = now() WHERE run_id = %s", (run.id,)
        )
        writer.execute("UPDATE workflow_runs SET last_message = 'raw' WHERE id = %s", (run.id,))
        writer.execute("NOTIFY workflow_changes, 'marker'")
        # What the writer's backend sent (the store's announcer may still send one of its own for
        # create_run, from another backend, whenever its pause lets it)
        first = next(n for n in listener.notifies(timeout=30) if n.pid == writer.info.backend_pid)
        assert first.payload == "marker"
        store.set_node_state(run.id, "a", progress=0.6)
        announced = next(listener.notifies(timeout=30))
        row = listener.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = %s", (announced.pid,)
        ).fetchone()
        assert row == ("workflow_db announce",)

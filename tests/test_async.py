"""What only the async store has: many tasks at once, cancellation, per-task transactions, faults.

The behaviour suite runs against AsyncWorkflowStore too (``store_kind``); the
tests here drive it from their own event loop (``asyncio.run``), on both
databases.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from conftest import PostgresServer, require_pg
from factories import another_connection_holding, graph_structure, present
from pg_cluster import ThrowawayCluster

from workflow_db import (
    AsyncWorkflowStore,
    DatabaseUnavailableError,
    MigrationError,
    WorkflowGraph,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
    connect_async,
)
from workflow_db.dialects.base_async import AsyncChangeSignal
from workflow_db.dialects.sqlite_async import TRANSACTION_THREADS, AsyncSQLiteDatabase, _release_on
from workflow_db.migrate import upgrade

TASKS = 200


def run(test: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
    """Run an async test body on a fresh event loop."""
    asyncio.run(test(*args))


async def _graph(store: AsyncWorkflowStore, *nodes: str) -> WorkflowGraph:
    await store.ensure_project("p")
    return await store.create_graph(WorkflowGraph("p", "g", graph_structure(*(nodes or ("a", "b")))))


def test_two_hundred_tasks_lose_nothing(db_url: str) -> None:
    async def body() -> None:
        async with connect_async(db_url, max_size=8) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store, "a", "b")
            shared = await store.create_run(graph.id)

            async def task(index: int) -> None:
                run = await store.create_run(graph.id, id=f"run-{index}", project_id="p")
                await store.set_node_state(run.id, "a", progress=0.5, messages=[f"start {index}"])
                await store.append_node_message(run.id, "a", f"more {index}")
                await store.append_node_message(shared.id, "b", f"task {index}")
                await store.update_run_status(run.id, "completed")

            await asyncio.gather(*(task(index) for index in range(TASKS)))
            assert await store.count_runs(status="completed") == TASKS
            for index in random.sample(range(TASKS), 20):
                state = present(await store.get_node_state(f"run-{index}", "a"))
                assert state.messages == [f"start {index}", f"more {index}"] and state.progress == 0.5
            messages = present(await store.get_node_state(shared.id, "b")).messages
            assert sorted(messages) == sorted(f"task {index}" for index in range(TASKS))

    run(body)


def test_a_transaction_belongs_to_its_task(db_url: str) -> None:
    """Two tasks in transactions at once never share one; a task started inside runs outside it."""

    async def body() -> None:
        async with connect_async(db_url) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store)
            seen_by_child: list[int] = []

            class Undo(Exception):
                pass

            async def undone() -> None:
                with pytest.raises(Undo):
                    async with store.transaction():
                        await store.create_run(graph.id, id="undone")
                        # A task started here copies the context, not the transaction.
                        seen_by_child.append(await asyncio.create_task(store.count_runs()))
                        raise Undo

            async def kept() -> None:
                async with store.transaction():
                    await store.create_run(graph.id, id="kept")
                    await store.set_node_state("kept", "a", progress=0.5)

            await undone()
            await kept()
            assert seen_by_child == [0]
            assert [r.id for r in await store.list_runs()] == ["kept"]
            assert present(await store.get_node_state("kept", "a")).progress == 0.5

    run(body)


def test_concurrent_transactions_each_commit_or_roll_back_alone(db_url: str) -> None:
    async def body() -> None:
        async with connect_async(db_url, max_size=4) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store)

            async def unit(index: int) -> None:
                async with store.transaction():
                    run = await store.create_run(graph.id, id=f"t-{index}")
                    await store.set_node_state(run.id, "a", progress=0.25)
                    await asyncio.sleep(0)  # let the other tasks in between the statements
                    await store.update_run_status(run.id, "completed")
                    if index % 3 == 0:
                        raise ValueError(index)

            results = await asyncio.gather(*(unit(index) for index in range(30)), return_exceptions=True)
            failed = {result.args[0] for result in results if isinstance(result, ValueError)}
            assert failed == set(range(0, 30, 3))
            kept = {run.id for run in await store.list_runs()}
            assert kept == {f"t-{index}" for index in range(30) if index % 3}
            for run_id in kept:
                assert present(await store.get_node_state(run_id, "a")).progress == 0.25

    run(body)


def test_cancelled_tasks_leave_whole_units_and_a_working_pool(db_url: str) -> None:
    """Tasks cancelled at random points: each unit of work is all there or not at all, and the
    (small) pool keeps serving afterwards, so no connection was lost or left mid-transaction."""

    async def body() -> None:
        async with connect_async(db_url, max_size=2) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store, "a", "b", "c")
            rng = random.Random(7)

            async def unit(index: int) -> None:
                async with store.transaction():
                    run = await store.create_run(graph.id, id=f"c-{index}")
                    for node in "abc":
                        await store.set_node_state(run.id, node, progress=1.0, status="completed")
                    await store.update_run_status(run.id, "completed")

            async def single(index: int) -> None:
                run = await store.create_run(graph.id, id=f"s-{index}")
                await store.append_node_message(run.id, "a", "one")

            for round_ in range(6):
                tasks = [asyncio.create_task(unit(round_ * 100 + n)) for n in range(10)]
                tasks += [asyncio.create_task(single(round_ * 100 + n)) for n in range(10)]
                for _ in range(rng.randrange(1, 40)):
                    await asyncio.sleep(0)
                for task in tasks:
                    if rng.random() < 0.7:
                        task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            runs = await store.list_runs()
            units = sum(run.id.startswith("c-") for run in runs)
            assert 0 < units < 60, units  # some were cancelled, some were not
            for run in runs:
                states = await store.list_node_states(run.id)
                if run.id.startswith("c-"):  # a transaction: all of it or nothing
                    assert run.status is WorkflowRunStatus.COMPLETED
                    assert [s.status.value for s in states] == ["completed"] * 3
                else:  # two calls: the first may stand alone, each one whole
                    assert {s.node_id for s in states} == {"a", "b", "c"}
            # The pool of two still serves a burst: nothing leaked, nothing stuck in a transaction.
            await asyncio.gather(*(single(1000 + n) for n in range(20)))
            assert await store.count_runs(workflow_id=graph.id) >= 20

    run(body)


def _migrated_sqlite(path: Path) -> str:
    """The URL of a new SQLite file at ``path`` with every migration applied."""
    url = f"sqlite:///{path}"
    with connect(url) as sync_db:
        upgrade(sync_db)
    return url


def test_each_store_refuses_the_other_kind_of_database(db_url: str) -> None:
    async def body() -> None:
        async with connect_async(db_url) as async_db:
            with pytest.raises(TypeError, match=r"^WorkflowStore needs the database connect\(\) returns"):
                WorkflowStore(async_db)  # type: ignore[arg-type]
        refused = pytest.raises(TypeError, match=r"AsyncWorkflowStore needs the database connect_async\(\)")
        with connect(db_url) as sync_db, refused:
            AsyncWorkflowStore(sync_db)  # type: ignore[arg-type]

    run(body)


def test_sqlite_statements_never_run_on_the_event_loop(tmp_path: Path) -> None:
    url = _migrated_sqlite(tmp_path / "loop.db")

    async def body() -> None:
        async with connect_async(url) as db:
            assert isinstance(db, AsyncSQLiteDatabase)
            store = AsyncWorkflowStore(db)
            graph = await _graph(store)
            await asyncio.gather(*(store.get_graph(graph.id) for _ in range(8)))  # opens the readers
            threads: set[int] = set()
            connections = [db.sync._writer_connection, *db.sync._idle_readers]
            for connection in connections:
                connection.set_trace_callback(lambda _: threads.add(threading.get_ident()))
            run_ = await store.create_run(graph.id)
            async with store.transaction():
                await store.set_node_state(run_.id, "a", progress=0.5)
            await asyncio.gather(*(store.list_node_states(run_.id) for _ in range(8)))
            assert threads and threading.get_ident() not in threads

    run(body)


def test_connect_async_refuses_what_connect_refuses(blank_url: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        connect_async("mysql://x/y")
    with pytest.raises(ValueError, match="timeout"):
        connect_async(blank_url, timeout=0)

    async def body() -> None:
        db = await connect_async(blank_url)
        try:
            with pytest.raises(MigrationError, match=r"workflow_db\.migrate"):
                AsyncWorkflowStore(db)
        finally:
            await db.close()

    run(body)


def test_an_unreachable_server_is_unavailable_within_the_timeout() -> None:
    async def body() -> None:
        with pytest.raises(DatabaseUnavailableError, match=r"within 1 s") as caught:
            await connect_async("postgresql://someone:s3cret-pw@127.0.0.1:9/nowhere", timeout=1)
        assert "s3cret-pw" not in str(caught.value)

    run(body)


def test_a_write_behind_a_held_lock_waits_at_most_the_timeout(db_url: str) -> None:
    async def body() -> None:
        async with connect_async(db_url) as db:
            store = AsyncWorkflowStore(db)
            run_ = await store.create_run((await _graph(store)).id)
        with another_connection_holding(db_url, run_.id):
            async with connect_async(db_url, timeout=0.5) as db:
                store = AsyncWorkflowStore(db)
                with pytest.raises(DatabaseUnavailableError, match=r"timeout of 0\.5 s"):
                    await store.update_run_status(run_.id, "running")
                with pytest.raises(DatabaseUnavailableError, match=r"timeout of 0\.5 s"):
                    async with store.transaction():
                        await store.set_node_state(run_.id, "a", progress=0.5)
                assert present(await store.get_run(run_.id)).status is WorkflowRunStatus.PENDING
        async with connect_async(db_url) as db:
            store = AsyncWorkflowStore(db)
            assert present(await store.update_run_status(run_.id, "running")).status.value == "running"

    run(body)


def test_a_killed_backend_is_unavailable_then_the_next_call_works(
    pg_server: PostgresServer | None,
) -> None:
    server = require_pg(pg_server)
    name = server.create_database(template=server.template)
    url = server.url_for(name)

    async def kill_others() -> None:
        with server.admin() as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

    async def body() -> None:
        async with connect_async(url, min_size=1, max_size=1) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store)
            with pytest.raises(DatabaseUnavailableError):
                async with store.transaction():
                    await store.create_run(graph.id, id="lost")
                    await kill_others()
                    await store.create_run(graph.id, id="after the kill")
            await kill_others()  # between calls: the pool's check replaces the connection
            assert await store.get_run("lost") is None
            assert (await store.create_run(graph.id, id="fine")).id == "fine"

    try:
        run(body)
    finally:
        server.drop_database(name)


def test_a_stopped_server_is_unavailable_then_back(tmp_path: Path) -> None:
    cluster = ThrowawayCluster.start(tmp_path)
    if cluster is None:
        require_pg(None)  # skips, or fails under CI=true
        return

    async def body(cluster: ThrowawayCluster) -> None:
        with connect(cluster.url) as sync_db:
            upgrade(sync_db)
        async with connect_async(cluster.url, min_size=1, max_size=2, timeout=3) as db:
            store = AsyncWorkflowStore(db)
            run_ = await store.create_run((await _graph(store)).id)
            cluster.stop()
            with pytest.raises(
                DatabaseUnavailableError, match=r"PostgreSQL at postgresql://postgres@127\.0\.0\.1"
            ):
                await store.get_run(run_.id)
            with pytest.raises(DatabaseUnavailableError):
                async with store.transaction():
                    await store.update_run_status(run_.id, "running")
            cluster.resume()
            db.timeout = 15.0  # the pool reconnects with backoff: wait long enough for it
            assert await store.get_run(run_.id) == run_  # the same database object works again
            assert (
                present(await store.update_run_status(run_.id, "running")).status is WorkflowRunStatus.RUNNING
            )

    try:
        run(body, cluster)
    finally:
        cluster.remove()


def test_sqlite_transactions_share_a_bounded_set_of_threads(tmp_path: Path) -> None:
    url = _migrated_sqlite(tmp_path / "threads.db")

    async def body() -> None:
        async with connect_async(url) as db:
            assert isinstance(db, AsyncSQLiteDatabase)
            store = AsyncWorkflowStore(db)
            graph = await _graph(store)

            async def unit(index: int) -> None:
                async with store.transaction():
                    await store.create_run(graph.id, id=f"b-{index}")

            await asyncio.gather(*(unit(index) for index in range(50)))
            assert await store.count_runs() == 50
            for _ in range(TRANSACTION_THREADS):  # every slot back: every thread has put itself back
                await db._thread_slots.acquire()
            assert 1 <= len(db._idle_threads) <= TRANSACTION_THREADS

    run(body)


def test_a_clean_shutdown_logs_nothing_above_debug(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """asyncio.run ending right after a SQLite transaction: the transaction thread may free its
    slot after the loop closed. It says so at DEBUG, never as a failure."""
    url = _migrated_sqlite(tmp_path / "shutdown.db")

    async def body() -> None:
        async with connect_async(url) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store)
            async with store.transaction():
                await store.create_run(graph.id)

    with caplog.at_level(logging.DEBUG, logger="workflow_db"):
        for _ in range(20):
            run(body)
        closed = asyncio.new_event_loop()
        closed.close()
        _release_on(closed, asyncio.Semaphore())  # what a late thread meets: no error
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []


def test_a_sqlite_call_after_close_is_refused_not_left_waiting(tmp_path: Path) -> None:
    """A call that comes after the close (a watcher that waited for its turn to fetch while the
    database closed) is refused at once: before, it was queued behind the worker threads' end and
    nobody ever answered it (a test run hung so once)."""
    url = _migrated_sqlite(tmp_path / "closed.db")

    async def body() -> None:
        db = await connect_async(url)
        store = AsyncWorkflowStore(db)
        run_id = (await store.create_run((await _graph(store)).id)).id
        await db.close()
        for call in (store.get_run(run_id), store.list_changes(), store.set_node_state(run_id, "a")):
            with pytest.raises(DatabaseUnavailableError, match="closed"):
                await asyncio.wait_for(call, 10)

    run(body)


def test_a_watcher_cancelled_as_a_change_wakes_it_stays_cancelled() -> None:
    """Python 3.11's asyncio.wait_for swallows a cancellation that arrives as the awaited thing
    completes: a watcher stopped just as a change woke it kept running for ever (and whoever
    awaited it, with it)."""

    async def body() -> None:
        signal = AsyncChangeSignal()
        waiter = asyncio.create_task(signal.wait(signal.generation, 30))
        await asyncio.sleep(0)  # the watcher is waiting
        signal.bump()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    run(body)

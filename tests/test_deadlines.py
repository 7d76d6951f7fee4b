"""One deadline per call: a frozen server, a pool wait and a lock wait never outlast ``timeout``.

The frozen server is a throw-away cluster of the test's own (SIGSTOP on every
one of its processes), never the shared one. Each call's duration is checked
against the contract ("within ``timeout`` of its start, plus about a second"),
with a second more of slack for a busy CI machine: a deadline, not a speed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import require_pg
from factories import another_connection_holding, make_graph, present
from pg_cluster import ThrowawayCluster

from workflow_db import (
    AsyncWorkflowStore,
    DatabaseUnavailableError,
    WorkflowGraph,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
    connect_async,
)
from workflow_db.migrate import upgrade

TIMEOUT = 2.0
BOUND = TIMEOUT + 1.0 + 1.0  # the contract's "plus about a second", and a second for a busy machine


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ThrowawayCluster]:
    started = ThrowawayCluster.start(tmp_path)
    if started is None:
        require_pg(None)  # skips, or fails under CI=true
        raise AssertionError("unreachable")
    with connect(started.url) as db:
        upgrade(db)
    try:
        yield started
    finally:
        started.thaw()
        started.remove()


def unavailable_within_the_deadline(call: Callable[[], object]) -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError):
        call()
    assert time.monotonic() - started < BOUND


@pytest.mark.postgresql
def test_a_frozen_server_gives_unavailable_within_the_timeout_then_the_pool_heals(
    cluster: ThrowawayCluster,
) -> None:
    with connect(cluster.url, min_size=2, max_size=2, timeout=TIMEOUT) as db:
        store = WorkflowStore(db)
        run = store.create_run(make_graph(store, "p", "a").id)
        cluster.freeze()
        unavailable_within_the_deadline(lambda: store.get_run(run.id))
        unavailable_within_the_deadline(lambda: store.set_node_state(run.id, "a", progress=0.5))

        def in_a_transaction() -> None:
            with store.transaction():
                store.update_run_status(run.id, "running")
                store.set_node_state(run.id, "a", progress=0.5)

        unavailable_within_the_deadline(in_a_transaction)
        unavailable_within_the_deadline(lambda: store.list_node_states(run.id))
        cluster.thaw()
        db.timeout = 30.0  # the pool replaces what it closed: give it time, then everything works
        assert present(store.get_run(run.id)).status is WorkflowRunStatus.PENDING  # nothing was written
        assert present(store.set_node_state(run.id, "a", progress=0.7)).progress == 0.7


@pytest.mark.postgresql
def test_a_frozen_server_gives_unavailable_within_the_timeout_to_the_async_store(
    cluster: ThrowawayCluster,
) -> None:
    async def body() -> None:
        async with connect_async(cluster.url, min_size=2, max_size=2, timeout=TIMEOUT) as db:
            store = AsyncWorkflowStore(db)
            await store.ensure_project("p")
            graph = await store.create_graph(WorkflowGraph("p", "g", {"nodes": [{"id": "a"}]}))
            run = await store.create_run(graph.id)
            cluster.freeze()

            async def in_a_transaction() -> None:
                async with store.transaction():
                    await store.update_run_status(run.id, "running")

            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.get_run(run.id),
                lambda: store.append_node_message(run.id, "a", "m"),
                in_a_transaction,
            ]
            for call in calls:
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailableError):
                    await call()
                assert time.monotonic() - started < BOUND
            cluster.thaw()
            db.timeout = 30.0
            assert present(await store.get_run(run.id)).status is WorkflowRunStatus.PENDING
            assert present(await store.set_node_state(run.id, "a", progress=0.7)).progress == 0.7

    asyncio.run(body())


def test_a_pool_wait_and_a_lock_wait_share_one_deadline(pg_urls: tuple[str, str]) -> None:
    """A call that waited for a pooled connection has only what is left of its time for a lock."""
    db_url, _ = pg_urls
    with connect(db_url, min_size=1, max_size=1, timeout=TIMEOUT) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a")
        locked, other = store.create_run(graph.id), store.create_run(graph.id)
        holding, release = threading.Event(), threading.Event()

        def hold_the_only_connection() -> None:
            with store.transaction():
                store.update_run_status(other.id, "running")
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold_the_only_connection)
        holder.start()
        assert holding.wait(30)
        handover = threading.Timer(TIMEOUT * 0.8, release.set)  # the pool's wait: 1.6 s of the 2
        with another_connection_holding(db_url, locked.id):
            handover.start()
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailableError, match="row another transaction holds"):
                store.update_run_status(locked.id, "running")
            elapsed = time.monotonic() - started
        holder.join()
        handover.join()
    # The lock wait got what was left (0.4 s), not a timeout of its own: 2.0 s, where two
    # separate timeouts took 3.6 s.
    assert elapsed < TIMEOUT + 0.9

"""Read replicas: reads served by a streaming replica, never staler than the caller's own commits.

A throw-away primary and an asynchronous streaming replica of its own (``initdb``, ``pg_basebackup
-R``, ports of their own on 127.0.0.1; never the shared server), both counting their statements in
``pg_stat_statements``: which server served a read is read off that server's own statistics. A
replica whose replay is held back (``recovery_min_apply_delay``) makes every read that ignored the
caller's commits fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from conftest import PostgresServer, require_pg
from factories import graph_structure, make_graph, present, run_threads
from pg_cluster import ThrowawayCluster

from workflow_db import (
    AsyncWorkflowStore,
    IntegrityError,
    WorkflowGraph,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
    connect_async,
)
from workflow_db.migrate import upgrade

STATISTICS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_utility": "off"}
OURS_ONLY = (
    "query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_last_wal_replay_lsn%'"
    " AND query NOT LIKE '%pg_current_wal_insert_lsn%' AND query NOT LIKE '%pg_settings%'"
)


class Replicated:
    """A primary and its streaming replica, migrated."""

    def __init__(self, primary: ThrowawayCluster, replica: ThrowawayCluster) -> None:
        self.primary = primary
        self.replica = replica

    def calls(self, cluster: ThrowawayCluster) -> dict[int, int]:
        """How often ``cluster`` ran each of the store's statements, by query id."""
        with psycopg.connect(cluster.url, autocommit=True) as connection:
            sql = f"SELECT queryid, sum(calls)::bigint FROM pg_stat_statements WHERE {OURS_ONLY} GROUP BY 1"
            rows = connection.execute(sql).fetchall()
        return {queryid: calls for queryid, calls in rows}

    def wait_for_replay(self) -> None:
        """Return once the replica has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.url, autocommit=True) as primary:
            written = present(primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone())[0]
        with psycopg.connect(self.replica.url, autocommit=True) as replica:
            deadline = time.monotonic() + 30
            while not present(
                replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [written]).fetchone()
            )[0]:
                assert time.monotonic() < deadline, "the replica never replayed the primary's writes"
                time.sleep(0.01)  # polling the replay position, not waiting out a race

    def delay_replay(self, delay: str) -> None:
        """Hold back the replica's replay of each commit by ``delay`` (``'0'``: not at all)."""
        with psycopg.connect(self.replica.url, autocommit=True) as connection:
            connection.execute(f"ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'")
            connection.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while connection.execute("SHOW recovery_min_apply_delay").fetchone() != (
                "0" if delay == "0" else delay,
            ):
                assert time.monotonic() < deadline, "the replica never took the new delay"
                time.sleep(0.01)  # polling a setting, not waiting out a race


async def _graph(store: AsyncWorkflowStore, project_id: str) -> WorkflowGraph:
    await store.ensure_project(project_id)
    return await store.create_graph(WorkflowGraph(project_id, "g", graph_structure("a", "b")))


def served(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    """The statements run between two :meth:`Replicated.calls`, with how often."""
    grown = {queryid: calls - before.get(queryid, 0) for queryid, calls in after.items()}
    return {queryid: calls for queryid, calls in grown.items() if calls}


@pytest.fixture(scope="module")
def replicated(
    pg_server: PostgresServer | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicated]:
    require_pg(pg_server)  # the postgresql env (and CI) runs these; they never touch its server
    primary = ThrowawayCluster.start(tmp_path_factory.mktemp("primary"), STATISTICS)
    if primary is None:
        require_pg(None)
        raise AssertionError("unreachable")
    replica = None
    try:
        with psycopg.connect(primary.url, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_stat_statements")
        replica = ThrowawayCluster.standby_of(primary)
        with connect(primary.url) as db:
            upgrade(db)
        yield Replicated(primary, replica)
    finally:
        primary.remove()
        if replica is not None:
            replica.remove()


def test_reads_are_served_by_the_replica_and_nowhere_else(replicated: Replicated) -> None:
    with connect(replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=10) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "reads")
        run = store.create_run(graph.id)
        store.set_node_state(run.id, "a", progress=0.5)
        replicated.wait_for_replay()  # else a read finding the replica behind runs again once it caught up
        on_replica, on_primary = replicated.calls(replicated.replica), replicated.calls(replicated.primary)

        assert present(store.get_project(graph.project_id)).id == graph.project_id
        assert present(store.get_graph(graph.id)).id == graph.id
        assert [g.id for g in store.list_graphs(project_id=graph.project_id)] == [graph.id]
        assert present(store.get_run(run.id)).id == run.id
        assert [r.id for r in store.list_runs(workflow_id=graph.id)] == [run.id]
        assert store.count_runs(workflow_id=graph.id) == 1
        assert present(store.run_summary(run.id)).running == ["a"]
        assert present(store.get_node_state(run.id, "a")).progress == 0.5
        assert [s.node_id for s in store.list_node_states(run.id)] == ["a", "b", "c"]

        reads = served(on_replica, replicated.calls(replicated.replica))
        assert sum(reads.values()) == 9  # each read one statement, all of them there
        elsewhere = served(on_primary, replicated.calls(replicated.primary))
        assert not set(reads) & set(elsewhere)  # none of them ran on the primary


def test_a_refused_write_leaves_the_next_calls_whole(replicated: Replicated) -> None:
    """With replicas a write's commit position comes back with it; a refused write brings none."""
    with connect(replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=10) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "refused")
        with pytest.raises(IntegrityError):
            store.create_run("no-such-graph")
        run = store.create_run(graph.id)
        assert store.set_node_state(run.id, "a", progress=0.25).progress == 0.25
        assert present(store.get_node_state(run.id, "a")).progress == 0.25


def test_the_async_store_reads_on_the_replica_too(replicated: Replicated) -> None:
    async def body() -> int:
        async with connect_async(
            replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=10
        ) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store, "async")
            run = await store.create_run(graph.id)
            before = replicated.calls(replicated.replica)
            assert present(await store.get_run(run.id)).id == run.id
            assert await store.count_runs(workflow_id=graph.id) == 1
            return sum(served(before, replicated.calls(replicated.replica)).values())

    assert asyncio.run(body()) == 2


def test_two_hundred_tasks_read_their_own_writes_from_a_lagging_replica(replicated: Replicated) -> None:
    """Replay is held back 20 ms: a read that did not wait for the task's commits would miss them."""
    tasks = 200

    async def body() -> None:
        async with connect_async(
            replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=30, max_size=8
        ) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store, "tasks")

            async def task(index: int) -> None:
                run = await store.create_run(graph.id, input={"task": index})
                assert present(await store.get_run(run.id)).input == {"task": index}
                await store.set_node_state(run.id, "a", progress=index / tasks)
                assert present(await store.get_node_state(run.id, "a")).progress == index / tasks
                await store.update_run_status(run.id, WorkflowRunStatus.COMPLETED)
                assert present(await store.get_run(run.id)).status == WorkflowRunStatus.COMPLETED

            on_replica, on_primary = (
                replicated.calls(replicated.replica),
                replicated.calls(replicated.primary),
            )
            await asyncio.gather(*(task(index) for index in range(tasks)))
            reads = served(on_replica, replicated.calls(replicated.replica))
            # every read served there (a read sent before the replica had replayed is sent again)
            assert sum(reads.values()) >= 3 * tasks
            assert not set(reads) & set(served(on_primary, replicated.calls(replicated.primary)))

    replicated.delay_replay("20ms")
    try:
        asyncio.run(body())
    finally:
        replicated.delay_replay("0")


def test_a_task_reads_what_the_tasks_it_started_wrote(replicated: Replicated) -> None:
    """The tasks a task starts after its first call share its position: their commits count for it."""

    async def body() -> None:
        async with connect_async(
            replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=30
        ) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store, "children")  # the task's first calls
            runs = await asyncio.gather(*(store.create_run(graph.id) for _ in range(10)))  # ten child tasks
            before = replicated.calls(replicated.replica)
            assert [present(await store.get_run(run.id)).id for run in runs] == [run.id for run in runs]
            assert sum(served(before, replicated.calls(replicated.replica)).values()) >= len(runs)

    replicated.delay_replay("20ms")
    try:
        asyncio.run(body())
    finally:
        replicated.delay_replay("0")


def test_a_replica_further_behind_than_the_wait_leaves_reads_to_the_primary(replicated: Replicated) -> None:
    replicated.delay_replay("2s")
    try:
        with (
            connect(replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=0.05) as db,
            connect(replicated.primary.url, replica_urls=[replicated.replica.url]) as other_process,
        ):
            store, other = WorkflowStore(db), WorkflowStore(other_process)
            graph = make_graph(store, "behind")
            run = store.create_run(graph.id)
            for _ in range(5):  # own writes: always there (from the primary)
                assert present(store.get_run(run.id)).id == run.id
            # another process's writes show up after the replica's lag: it reads the replica
            assert other.get_run(run.id) is None
            deadline = time.monotonic() + 30
            while other.get_run(run.id) is None:
                assert time.monotonic() < deadline, "the replica never replayed the run"
                time.sleep(0.05)  # polling the replica's state, not waiting out a race
    finally:
        replicated.delay_replay("0")


def test_inside_a_transaction_every_read_is_on_the_primary(replicated: Replicated) -> None:
    with connect(replicated.primary.url, replica_urls=[replicated.replica.url], replica_wait=10) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "transaction")
        before = replicated.calls(replicated.replica)
        with store.transaction():
            run = store.create_run(graph.id)
            assert present(store.get_run(run.id)).id == run.id  # uncommitted: only the primary has it
            assert store.count_runs(workflow_id=graph.id) == 1
        assert served(before, replicated.calls(replicated.replica)) == {}
        changes = store.list_changes(project_id=graph.project_id)
        assert run.id in {change.run_id for change in changes}  # the feed reads the primary


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
@pytest.mark.parametrize("store_kind", ["sync", "async"])
def test_a_replica_gone_and_back_under_load_costs_no_call(
    replicated: Replicated, store_kind: str, outage: str
) -> None:
    """4 threads (sync store) or 20 tasks (async store) write and read while the replica goes away and
    comes back: stopped at once (its connections break mid-read), or frozen (SIGSTOP: its connections
    stay open and nothing answers, so a read waits for the replica's share of its time, then goes to
    the primary). No call fails, and reads come back to the replica."""
    errors: list[BaseException] = []
    done = threading.Event()
    rounds = [0]
    workers = 4 if store_kind == "sync" else 20
    each = [0] * workers  # rounds per thread or task
    replicas = [replicated.replica.url]

    def sync_load() -> None:
        with connect(replicated.primary.url, replica_urls=replicas, max_size=8) as db:
            store = WorkflowStore(db)
            graph = make_graph(store, "load")

            def worker(index: int) -> None:
                while not done.is_set() and not errors:
                    run = store.create_run(graph.id)
                    assert present(store.get_run(run.id)).id == run.id
                    store.set_node_state(run.id, "a", progress=1.0)
                    assert [s.progress for s in store.list_node_states(run.id)] == [1.0, 0.0, 0.0]
                    rounds[0] += 1
                    each[index] += 1

            errors.extend(run_threads(workers, worker))

    async def async_load() -> None:
        async with connect_async(replicated.primary.url, replica_urls=replicas, max_size=8) as db:
            store = AsyncWorkflowStore(db)
            graph = await _graph(store, "async-load")

            async def worker(index: int) -> None:
                while not done.is_set():
                    run = await store.create_run(graph.id)
                    assert present(await store.get_run(run.id)).id == run.id
                    await store.set_node_state(run.id, "a", progress=1.0)
                    assert [s.progress for s in await store.list_node_states(run.id)] == [1.0, 0.0]
                    rounds[0] += 1
                    each[index] += 1

            await asyncio.gather(*(worker(index) for index in range(workers)))

    def load() -> None:
        try:
            if store_kind == "sync":
                sync_load()
            else:
                asyncio.run(async_load())
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    def replica_serves() -> None:
        before = replicated.calls(replicated.replica)
        deadline = time.monotonic() + 60
        while sum(served(before, replicated.calls(replicated.replica)).values()) < 20:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.05)  # polling the replica's statistics, not waiting out a race

    def rounds_pass(count: int) -> None:
        """``count`` rounds in all, and 5 by every thread or task: none of them is stuck on a read."""
        target, targets = rounds[0] + count, [done + 5 for done in each]
        deadline = time.monotonic() + 60
        while rounds[0] < target or any(done < wanted for done, wanted in zip(each, targets, strict=True)):
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.01)  # polling the counters, not waiting out a race

    loader = threading.Thread(target=load)
    loader.start()
    try:
        replica_serves()
        if outage == "stopped":
            replicated.replica.stop()  # immediate: its connections break mid-read
        else:
            replicated.replica.freeze()
        rounds_pass(200)  # reads go to the primary meanwhile
        if outage == "stopped":
            replicated.replica.resume()
        else:
            replicated.replica.thaw()
        replica_serves()  # and come back to the replica
        rounds_pass(50)
    finally:
        if outage == "frozen":
            replicated.replica.thaw()
        done.set()
        loader.join()
        if not (replicated.replica.directory / "data" / "postmaster.pid").exists():
            replicated.replica.resume()
    assert errors == []

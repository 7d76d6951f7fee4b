"""Benchmark workflow_db against the specification's query targets and against the bare driver.

    python scripts/bench.py --url sqlite:////tmp/bench.db
    python scripts/bench.py --url postgresql://user@host/bench [--runs 10000] [--scale 1000000]

The database must be empty (it is migrated here). The script loads the specification's
data set (``--runs`` runs over 100 projects, 10 nodes each) through the store,
times every call (median and p95 in ms) and the bare driver running the same
SQL and fetching plain tuples. Then it copies the database (the reference),
bulk-loads the scale set (``--scale`` runs) into the original and times the
pages of 50 on both in the same rounds, so a slow minute of the machine
cannot pass for the cost of a million runs. Last, the async section
(``scripts/bench_async.py``): 200 tasks on the async store, on the sync store
through ``asyncio.to_thread`` and on bare psycopg async. It prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import bench_async
import bench_feed

from workflow_db import Database, WorkflowGraph, WorkflowRun, WorkflowStore, connect
from workflow_db import queries as q
from workflow_db.dialects.base import SQL
from workflow_db.dialects.sqlite import SQL_FUNCTIONS
from workflow_db.migrate import upgrade

PROJECTS = 100
NODES_PER_GRAPH = 10
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
PAGE = 50
ASYNC_TASKS = 200


def progress(message: str) -> None:
    """Show what the benchmark is doing (stderr, so the table stays clean)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def timed(*calls: Callable[[], object], repeat: int) -> list[tuple[float, float]]:
    """Median and p95 in ms of each call, over ``repeat`` rounds (after one warm-up round).

    The calls take turns within every round, so a pause of the machine hits
    them alike instead of whichever ran during it.
    """
    samples: list[list[float]] = [[] for _ in calls]
    for round_ in range(repeat + 1):
        for call, times in zip(calls, samples, strict=True):
            started = time.perf_counter()
            call()
            if round_:
                times.append((time.perf_counter() - started) * 1000)
    return [_median_p95(times) for times in samples]


def _median_p95(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


class BareDriver:
    """The same SQL on a plain driver connection, fetching plain tuples."""

    def __init__(self, db: Database, url: str) -> None:
        self.db = db
        if db.dialect == "sqlite":
            self.connection: Any = sqlite3.connect(
                url.partition(":///")[2], check_same_thread=False, isolation_level=None
            )
            for name, arguments, function in SQL_FUNCTIONS:  # what our SQL calls, as the adapter defines it
                self.connection.create_function(name, arguments, function)
        else:
            import psycopg

            self.connection = psycopg.connect(url, autocommit=True)

    def fetch(self, sql: SQL, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run ``sql`` (with ``:name`` placeholders) and fetch every row."""
        return list(self.connection.execute(self.db.prepare(sql), params).fetchall())

    def transaction(self, statements: list[tuple[str, Any]]) -> None:
        """Run already prepared statements between BEGIN and COMMIT, fetching each one's rows."""
        if self.db.dialect == "sqlite":
            self.connection.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                self.connection.execute(sql, params).fetchall()
            self.connection.execute("COMMIT")
            return
        with self.connection.transaction():
            for sql, params in statements:
                self.connection.execute(sql, params).fetchall()

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


class Report:
    """Collects result rows and prints them as a Markdown table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, name: str, store: tuple[float, float], bare: tuple[float, float] | None = None) -> None:
        """One timed operation, optionally with the bare driver's time and the ratio."""
        ratio = f"{store[0] / bare[0]:.2f}" if bare else ""
        bare_text = f"{bare[0]:.3f} / {bare[1]:.3f}" if bare else ""
        self.rows.append((name, f"{store[0]:.3f} / {store[1]:.3f}", bare_text, ratio))
        progress(f"{name}: {store[0]:.3f} ms" + (f" (bare {bare[0]:.3f} ms)" if bare else ""))

    def note(self, name: str, value: str) -> None:
        """A result that is not a latency."""
        self.rows.append((name, value, "", ""))
        progress(f"{name}: {value}")

    def print(self, header: str) -> None:
        """Print the table."""
        print(header)
        print()
        print("| operation | store median / p95 (ms) | bare driver median / p95 (ms) | store / bare |")
        print("|---|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def load_spec_data(store: WorkflowStore, runs: int) -> list[WorkflowGraph]:
    """``runs`` runs over 100 projects, one 10-node graph per project, statuses mixed."""
    graphs = []
    nodes = [{"id": f"n{index}"} for index in range(NODES_PER_GRAPH)]
    for project in range(PROJECTS):
        store.ensure_project(f"proj_{project}")
        graphs.append(store.create_graph(WorkflowGraph(f"proj_{project}", "bench", {"nodes": nodes})))
    for index in range(runs):
        store.create_run(graphs[index % PROJECTS].id, {"index": index}, status=STATUSES[index % 5])
        if (index + 1) % 2000 == 0:
            progress(f"loaded {index + 1} of {runs} runs through the store")
    return graphs


def bulk_load_runs(db: Database, url: str, graphs: list[WorkflowGraph], count: int) -> None:
    """Add ``count`` runs of node-less graphs (one per project) fast, in big transactions."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    batch = 50_000
    for first in range(0, count, batch):
        rows = [
            (
                f"scale-{index:08d}",
                f"proj_{index % PROJECTS}",
                graphs[index % PROJECTS].id,
                1,
                STATUSES[index % 5],
                '{"i": 1}',
                start + timedelta(seconds=index),
                start + timedelta(seconds=index),
            )
            for index in range(first, min(first + batch, count))
        ]
        _insert_rows(db, url, rows)
        progress(f"bulk-loaded {first + len(rows)} of {count} runs")


def _insert_rows(db: Database, url: str, rows: list[tuple[Any, ...]]) -> None:
    columns = "id, project_id, workflow_id, workflow_version, status, input_json, started_at, updated_at"
    if db.dialect == "sqlite":
        lite = sqlite3.connect(url.partition(":///")[2])
        with lite:
            lite.executemany(
                f"INSERT INTO workflow_runs ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*row[:6], db.encode_time(row[6]), db.encode_time(row[7])) for row in rows],
            )
        lite.close()
        return
    import psycopg

    connection = psycopg.connect(url)
    with connection, connection.cursor().copy(f"COPY workflow_runs ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def settle(db: Database, bare: BareDriver) -> None:
    """After loading: fresh planner statistics, and no leftover work to race the timings.

    PostgreSQL: VACUUM ANALYZE (else autovacuum runs during the measurements).
    SQLite: ANALYZE and a WAL checkpoint (else every read consults a huge WAL).
    """
    statements = (
        ["VACUUM ANALYZE"] if db.dialect == "postgresql" else ["ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"]
    )
    for statement in statements:
        bare.connection.execute(statement)


def measure_pages(report: Report, benches: dict[str, Bench], workflow_ids: dict[str, str]) -> None:
    """One page of 50 by project, by status and by workflow, on every database in the same rounds.

    ``benches`` maps a label (the data set's size) to its bench; ``workflow_ids``
    maps it to the workflow whose runs to page through.
    """
    for name in ("project", "status", "workflow"):
        calls: list[Callable[[], object]] = []
        for label, bench in benches.items():
            filters = {
                "project": {"project_id": "proj_7"},
                "status": {"status": "running"},
                "workflow": {"workflow_id": workflow_ids[label]},
            }[name]
            (column,) = filters
            sql = f"{q.LIST_RUNS} WHERE {column} = :{column}{q.RUN_ORDER} LIMIT :limit"
            calls.append(functools.partial(bench.store.list_runs, **filters, limit=PAGE))  # type: ignore[arg-type]
            calls.append(functools.partial(bench.bare.fetch, sql, {**filters, "limit": PAGE}))
        timings = timed(*calls, repeat=next(iter(benches.values())).repeat)
        medians = []
        for index, label in enumerate(benches):
            store, bare = timings[2 * index], timings[2 * index + 1]
            report.add(f"list_runs page of {PAGE} by {name} ({label})", store, bare)
            medians.append(store[0])
        if len(medians) == 2:
            labels = list(benches)
            report.note(f"page by {name}: {labels[1]} / {labels[0]}", f"{medians[1] / medians[0]:.2f}x")


class Bench:
    """The store under test, its bare-driver twin, and how many times to call each."""

    def __init__(self, store: WorkflowStore, bare: BareDriver, repeat: int) -> None:
        self.store = store
        self.bare = bare
        self.repeat = repeat

    def compare(  # noqa: PLR0917 - a row of the report: name, call, and the bare SQL
        self,
        report: Report,
        name: str,
        call: Callable[[], object],
        sql: SQL,
        params: dict[str, Any],
        repeat: int | None = None,
    ) -> None:
        """Time a store read and the bare driver running the same SQL."""
        store, bare = timed(call, lambda: self.bare.fetch(sql, params), repeat=repeat or self.repeat)
        report.add(name, store, bare)

    def write(self, report: Report, name: str, call: Callable[[], object]) -> None:
        """Time a store write."""
        (store,) = timed(call, repeat=self.repeat * 4)
        report.add(name, store)


def measure_reads(report: Report, bench: Bench, graphs: list[WorkflowGraph], runs: int) -> WorkflowRun:
    """The specification's timed reads, store against bare driver; returns a run to write to."""
    store = bench.store
    bench.compare(
        report,
        f"list_runs() all {runs}",
        store.list_runs,
        f"{q.LIST_RUNS}{q.RUN_ORDER}",
        {},
        max(5, bench.repeat // 2),
    )
    bench.compare(
        report,
        f"list_runs() all {runs}, every field read",
        lambda: [run.updated_at for run in store.list_runs()],  # the first read decodes every field
        f"{q.LIST_RUNS}{q.RUN_ORDER}",
        {},
        max(5, bench.repeat // 2),
    )
    by_project = {"project_id": "proj_3"}
    bench.compare(
        report,
        "list_runs(project_id) of 100 projects",
        lambda: store.list_runs("proj_3"),
        f"{q.LIST_RUNS} WHERE project_id = :project_id{q.RUN_ORDER}",
        by_project,
    )
    bench.compare(
        report,
        "count_runs(project_id)",
        lambda: store.count_runs("proj_3"),
        f"{q.COUNT_RUNS} WHERE project_id = :project_id",
        by_project,
    )
    some_run = store.list_runs(limit=1)[0]
    bench.compare(
        report,
        "get_run",
        lambda: store.get_run(some_run.id),
        q.GET_RUN.any_project,
        {"id": some_run.id},
        bench.repeat * 4,
    )
    bench.compare(
        report,
        "get_run(project_id=)",
        lambda: store.get_run(some_run.id, project_id=some_run.project_id),
        q.GET_RUN.one_project,
        {"id": some_run.id, "project_id": some_run.project_id},
        bench.repeat * 4,
    )
    return some_run


def measure_node_states(report: Report, bench: Bench) -> WorkflowRun:
    """list_node_states of a 100-node run; returns that run."""
    store = bench.store
    wide = store.create_graph(
        WorkflowGraph("proj_0", "wide", {"nodes": [{"id": f"node-{i:03d}"} for i in range(100)]})
    )
    run = store.create_run(wide.id)
    for index in range(100):
        store.set_node_state(run.id, f"node-{index:03d}", progress=0.5, messages=["started"])
    bench.compare(
        report,
        "list_node_states (100 nodes)",
        lambda: store.list_node_states(run.id),
        q.LIST_NODE_STATES.any_project,
        {"run_id": run.id},
    )
    return run


def measure_writes(
    report: Report, bench: Bench, graph: WorkflowGraph, run: WorkflowRun, wide: WorkflowRun
) -> None:
    """The hot writes, one call at a time, then 100 threads creating runs."""
    store = bench.store
    bench.write(report, "create_run (10 nodes)", lambda: store.create_run(graph.id, {"x": 1}))
    nodes = itertools.cycle([f"node-{index:03d}" for index in range(100)])
    bench.write(report, "set_node_state", lambda: store.set_node_state(wide.id, next(nodes), progress=0.7))
    bench.write(
        report,
        "set_node_state(project_id=)",
        lambda: store.set_node_state(wide.id, next(nodes), progress=0.7, project_id=wide.project_id),
    )
    bench.write(
        report, "update_run_status", lambda: store.update_run_status(run.id, "running", last_message="tick")
    )
    bench.write(report, "append_node_message", lambda: store.append_node_message(wide.id, "node-000", "line"))

    def create_ten() -> None:
        for _ in range(10):
            store.create_run(graph.id)

    threads = [threading.Thread(target=create_ten) for _ in range(100)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.note("100 threads x 10 create_run", f"{1000 / (time.perf_counter() - started):,.0f} runs/s")


UNIT_NODES = 10
WARM_UP_CALLS = 50


def warm_up(call: Callable[[], object]) -> None:
    """Call ``call`` until every pooled connection has prepared its statements, as in a running service.

    psycopg_pool lends its idle connections in turn and psycopg prepares a
    statement on a connection at its 5th run there: with 8 connections a
    statement runs 40 times before every connection has it prepared.
    """
    for _ in range(WARM_UP_CALLS):
        call()


def measure_unit_of_work(report: Report, bench: Bench, graph: WorkflowGraph) -> None:
    """create_run + 10 set_node_state + update_run_status: in store.transaction(), as 12 calls,
    and as the same 12 statements between a bare BEGIN and COMMIT."""
    store = bench.store

    def calls() -> None:
        run = store.create_run(graph.id, {"unit": True})
        for index in range(UNIT_NODES):
            store.set_node_state(run.id, f"n{index}", status="completed", progress=1.0)
        store.update_run_status(run.id, "completed")

    def in_transaction() -> None:
        with store.transaction():
            calls()

    with bench_async.recorded_write(store.db) as statements:
        in_transaction()
    warm_up(in_transaction)
    fresh_ids = (f"unit-{n}" for n in itertools.count())

    def bare() -> None:
        run_id = next(fresh_ids)
        bench.bare.transaction(
            [(sql, {**params, "id": run_id} if "id" in params else {**params, "run_id": run_id})
             for sql, params in statements]
        )  # fmt: skip

    results = timed(in_transaction, calls, bare, repeat=bench.repeat * 2)
    for name, result in zip(
        ("in store.transaction()", "as 12 calls", "bare BEGIN ... COMMIT"), results, strict=True
    ):
        report.add(f"unit of work (create_run + {UNIT_NODES} set_node_state + status) {name}", result)
    report.note(
        "unit of work: store.transaction() / bare BEGIN ... COMMIT", f"{results[0][0] / results[2][0]:.2f}x"
    )


APPEND_COUNTS = (10, 1_000, 10_000)


def measure_appends(report: Report, bench: Bench, run: WorkflowRun) -> None:
    """``append_node_message`` on nodes already holding 10, 1,000 and 10,000 messages, taking turns.

    Also ``get_node_state`` of each (it reads the whole list) against the bare driver.
    """
    store = bench.store
    for count in APPEND_COUNTS:
        for index in range(count):
            store.append_node_message(run.id, f"log-{count}", f"line {index} of a node's log")
        progress(f"filled a node with {count:,} messages")
    settle(store.db, bench.bare)  # statistics of the message rows, as autovacuum would gather them
    for count in APPEND_COUNTS:
        warm_up(functools.partial(store.get_node_state, run.id, f"log-{count}"))
    appends = timed(
        *(
            functools.partial(store.append_node_message, run.id, f"log-{count}", "one more line")
            for count in APPEND_COUNTS
        ),
        repeat=bench.repeat * 4,
    )
    for count, result in zip(APPEND_COUNTS, appends, strict=True):
        report.add(f"append_node_message at {count:,} messages", result)
    report.note(
        f"append at {APPEND_COUNTS[-1]:,} / at {APPEND_COUNTS[0]:,} messages",
        f"{appends[-1][0] / appends[0][0]:.2f}x",
    )
    for count in APPEND_COUNTS:
        bench.compare(
            report,
            f"get_node_state of {count:,} messages",
            functools.partial(store.get_node_state, run.id, f"log-{count}"),
            q.GET_NODE_STATE.any_project,
            {"run_id": run.id, "node_id": f"log-{count}", "project_id": None},
        )


def measure_memory(report: Report, store: WorkflowStore) -> None:
    """Peak Python memory while listing every run."""
    tracemalloc.start()
    store.list_runs()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    report.note(f"peak memory of list_runs() over {store.count_runs()} runs", f"{peak / 2**20:.1f} MiB")


def measure_scale(report: Report, bench: Bench, reference: Bench, url: str, count: int) -> None:
    """Bulk-load ``count`` more runs, then time the pages on it and on the ``reference`` copy."""
    store, db = bench.store, bench.store.db
    scale_graphs = [
        store.create_graph(WorkflowGraph(f"proj_{project}", "scale", {"nodes": []}))
        for project in range(PROJECTS)
    ]
    progress(f"bulk-loading the scale set: {count} runs")
    bulk_load_runs(db, url, scale_graphs, count)
    bench_feed.number_pending(store)  # PostgreSQL numbers the bulk load's changes, as watchers would
    settle(db, bench.bare)
    runs, reference_runs = store.count_runs(), reference.store.count_runs()
    reference_workflow = reference.store.list_runs(project_id="proj_7", limit=1)[0].workflow_id
    measure_pages(
        report,
        {_size(reference_runs): reference, _size(runs): bench},
        {_size(reference_runs): reference_workflow, _size(runs): scale_graphs[7].id},
    )
    measure_claims(report, {_size(reference_runs): reference, _size(runs): bench})
    bench_feed.measure_pages(
        report, {_size(reference_runs): reference.store, _size(runs): store}, timed, bench.repeat
    )


def measure_claims(report: Report, benches: dict[str, Bench]) -> None:
    """claim_orphaned_runs(limit=10) on every database in the same rounds.

    Every running run of the data set counts as orphaned (a lease of 1 ms: all
    were touched longer ago), the worst case a crash leaves; each claim takes
    the ten touched longest ago, and its 1 ms lease makes them free again.
    """
    calls = [
        functools.partial(bench.store.claim_orphaned_runs, "bench", lease_seconds=0.001, limit=10)
        for bench in benches.values()
    ]
    timings = timed(*calls, repeat=next(iter(benches.values())).repeat)
    for label, timing in zip(benches, timings, strict=True):
        report.add(f"claim_orphaned_runs(limit=10) ({label})", timing)
    if len(timings) == 2:
        labels = list(benches)
        report.note(f"claim: {labels[1]} / {labels[0]}", f"{timings[1][0] / timings[0][0]:.2f}x")


CLAIMER = """
import json, sys, time
from workflow_db import WorkflowStore, connect
with connect(sys.argv[1]) as db:
    store = WorkflowStore(db)
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
    claimed = [r.id for _ in range(int(sys.argv[3]))
               for r in store.claim_orphaned_runs(sys.argv[2], lease_seconds=3600, limit=10)]
sys.stdout.write(json.dumps(claimed) + "\\n")
"""


def measure_claimers(report: Report, url: str, processes: int = 8, calls: int = 100) -> None:
    """``processes`` replicas claiming orphans at once, ``calls`` claims of 10 each: runs claimed a second."""
    claimers = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, url, f"replica-{n}", str(calls)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for n in range(processes)
    ]  # fmt: skip
    for claimer in claimers:
        assert claimer.stdout is not None and claimer.stdout.readline() == "ready\n"
    started = time.perf_counter()
    for claimer in claimers:
        assert claimer.stdin is not None
        claimer.stdin.write("go\n")
        claimer.stdin.flush()
    claimed = [run_id for claimer in claimers for run_id in json.loads(claimer.communicate()[0])]
    elapsed = time.perf_counter() - started
    if len(claimed) != len(set(claimed)):
        raise SystemExit("a run was claimed twice")
    report.note(
        f"{processes} processes claiming orphans",
        f"{len(claimed) / elapsed:,.0f} runs/s ({len(claimed):,} runs)",
    )


def _size(runs: int) -> str:
    return f"{runs:,} runs"


@contextlib.contextmanager
def open_bench(url: str, repeat: int) -> Iterator[Bench]:
    """A store and its bare-driver twin on ``url``, closed on exit."""
    with connect(url) as db:
        bare = BareDriver(db, url)
        try:
            yield Bench(WorkflowStore(db), bare, repeat)
        finally:
            bare.close()


def copy_database(url: str) -> str:
    """Copy the database at ``url`` (nobody may be connected to a PostgreSQL one); return the copy's URL."""
    if url.startswith("sqlite:"):
        copy_url = f"{url}.reference"
        drop_database(copy_url)
        with contextlib.closing(sqlite3.connect(url.partition(":///")[2])) as source:
            source.execute("VACUUM INTO ?", (copy_url.partition(":///")[2],))
        return copy_url
    from psycopg import sql

    parts = urlsplit(url)
    copy_url = urlunsplit(parts._replace(path=f"{parts.path}_reference"))
    drop_database(copy_url)
    with _postgres_admin(url) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(_database_name(copy_url)), sql.Identifier(_database_name(url))
            )
        )
    return copy_url


def drop_database(url: str) -> None:
    """Remove a copy made by :func:`copy_database` (nothing if it is not there)."""
    if url.startswith("sqlite:"):
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(url.partition(":///")[2] + suffix)
        return
    from psycopg import sql

    with _postgres_admin(url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(_database_name(url))))


@contextlib.contextmanager
def _postgres_admin(url: str) -> Iterator[Any]:
    """An autocommit connection to the ``postgres`` database of the server ``url`` names."""
    import psycopg

    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as admin:
        yield admin


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="an EMPTY database to fill")
    parser.add_argument(
        "--runs", type=int, default=10_000, help="size of the specification's data set (default 10000)"
    )
    parser.add_argument("--scale", type=int, default=1_000_000, help="runs in the scale set (0: skip)")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per read (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the async section (default 5)")
    parser.add_argument(
        "--async-seconds", type=float, default=1.0, help="seconds per async workload and round (default 1)"
    )
    args = parser.parse_args(argv)

    report = Report()
    with connect(args.url) as db:
        upgrade(db)
        store = WorkflowStore(db)
        if store.count_runs():
            parser.error("the database already holds runs: give the benchmark an empty one")
        bare = BareDriver(db, args.url)
        bench = Bench(store, bare, args.repeat)
        progress(f"loading {args.runs} runs over {PROJECTS} projects")
        graphs = load_spec_data(store, args.runs)
        settle(db, bare)
        some_run = measure_reads(report, bench, graphs, args.runs)
        wide_run = measure_node_states(report, bench)
        measure_writes(report, bench, graphs[1], some_run, wide_run)
        measure_appends(report, bench, wide_run)
        measure_unit_of_work(report, bench, graphs[2])
        progress("change feed: latency to another process, cost of 100 watchers")
        bench_feed.measure_latency(report, store, args.url, wide_run)
        bench_feed.measure_watcher_cost(report, store, args.url, wide_run)
        measure_memory(report, store)
        if not args.scale:
            size = _size(store.count_runs())
            measure_pages(report, {size: bench}, {size: graphs[7].id})
        bare.close()
        dialect = db.dialect
    if args.scale:
        reference_url = copy_database(args.url)
        try:
            with (
                open_bench(args.url, args.repeat) as bench,
                open_bench(reference_url, args.repeat) as reference,
            ):
                measure_scale(report, bench, reference, args.url, args.scale)
        finally:
            drop_database(reference_url)
    measure_claimers(report, args.url)
    progress(f"async section: {ASYNC_TASKS} tasks, {args.rounds} rounds")
    async_table = asyncio.run(
        bench_async.measure(
            args.url, tasks=ASYNC_TASKS, seconds=args.async_seconds, rounds=args.rounds, pool=4
        )
    )
    version = sqlite3.sqlite_version if dialect == "sqlite" else "PostgreSQL"
    report.print(
        f"workflow_db benchmark on {dialect} ({version}): {platform.node()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    print()
    print("\n".join(async_table))
    return 0


if __name__ == "__main__":
    sys.exit(main())

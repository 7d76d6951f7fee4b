"""The async section of the benchmark: the async store, the sync store through ``asyncio.to_thread``
and bare psycopg async, in the same rounds.

    python scripts/bench_async.py --url sqlite:////tmp/bench.db          # alone, on a migrated database
    python scripts/bench.py --url ...                                    # as part of the whole benchmark

Each workload is ``--tasks`` concurrent tasks (default 200) making calls of
one kind (``get_run``, ``list_node_states`` of a 100-node run,
``set_node_state``) for ``--seconds`` (default 1: about 100 ticks). Every
contender runs every workload once per round, taking turns, while a ticker
task sleeps 10 ms at a time and records how late it wakes (the event loop's
lag). Reported: calls a second (median of the rounds) and the lag's p50 /
p99 over all rounds. On PostgreSQL every contender has a pool of ``--pool``
connections; the sync store's threads are asyncio's default executor.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from workflow_db import (
    AsyncWorkflowStore,
    Database,
    WorkflowGraph,
    WorkflowStore,
    connect,
    connect_async,
)
from workflow_db.migrate import upgrade

TICK = 0.010
NODES = 100

Workload = Callable[[int], Awaitable[object]]
"""One call of a workload; its argument numbers the call."""


@dataclass
class Contender:
    """One way of reaching the database from asyncio, with what it measured."""

    name: str
    workloads: dict[str, Workload]
    rates: dict[str, list[float]] = field(default_factory=dict)
    lags: dict[str, list[float]] = field(default_factory=dict)


async def run_workload(call: Workload, tasks: int, seconds: float) -> tuple[float, list[float]]:
    """``tasks`` tasks calling for ``seconds``: (calls a second, the ticker's lags in ms)."""
    lags: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    calls = itertools.count()

    async def ticker() -> None:
        while loop.time() < deadline:
            started = loop.time()
            await asyncio.sleep(TICK)
            lags.append((loop.time() - started - TICK) * 1000)

    async def task() -> None:
        while loop.time() < deadline:
            await call(next(calls))

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await ticking
    return next(calls) / elapsed, lags


@contextmanager
def recorded_write(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Record the (SQL, parameters) of every write the sync store sends through ``db``."""
    seen: list[tuple[str, Any]] = []
    write = db.write

    def recording(sql: Any, params: Any, fetch: Any, *, refusable: bool = False, quiet: bool = False) -> Any:
        text = db.prepare(sql)
        seen.append((text, db.bounded(text, params, math.inf)))  # as the dialect sends them
        return write(sql, params, fetch, refusable=refusable, quiet=quiet)

    db.write = recording  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        db.write = write  # type: ignore[method-assign]


def prepare_data(store: WorkflowStore) -> tuple[str, str]:
    """A run of a 100-node graph with every node's state: (its id, the graph's id)."""
    store.ensure_project("bench_async")
    nodes = [{"id": f"node-{index:03d}"} for index in range(NODES)]
    graph = store.create_graph(WorkflowGraph("bench_async", "wide", {"nodes": nodes}))
    run = store.create_run(graph.id)
    for node in nodes:
        store.set_node_state(run.id, node["id"], progress=0.5, messages=["started"])
    return run.id, graph.id


def node_ids() -> Iterator[str]:
    """The wide run's node ids, round and round."""
    return itertools.cycle([f"node-{index:03d}" for index in range(NODES)])


def store_workloads(
    store: AsyncWorkflowStore | WorkflowStore, run_id: str, sync: bool
) -> dict[str, Workload]:
    """The three workloads on a store: awaited directly, or (sync) through ``asyncio.to_thread``."""
    nodes = node_ids()

    def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[object]:
        if sync:
            return asyncio.to_thread(function, *args, **kwargs)
        return function(*args, **kwargs)  # type: ignore[no-any-return]

    return {
        "get_run": lambda _: call(store.get_run, run_id),
        "list_node_states (100 nodes)": lambda _: call(store.list_node_states, run_id),
        "set_node_state": lambda _: call(store.set_node_state, run_id, next(nodes), progress=0.7),
    }


def bare_workloads(pool: Any, db: Database, store: WorkflowStore, run_id: str) -> dict[str, Workload]:
    """The same SQL on a bare psycopg ``AsyncConnectionPool`` (default loaders), fetching tuples."""
    from workflow_db import queries as q

    with recorded_write(db) as writes:
        store.set_node_state(run_id, "node-000", progress=0.7)
    (set_sql, set_params), nodes = writes[0], node_ids()
    get_run = db.prepare(q.GET_RUN.any_project), {"id": run_id, "project_id": None}
    states = db.prepare(q.LIST_NODE_STATES.any_project), {"run_id": run_id, "project_id": None}

    async def fetch(sql: str, params: dict[str, Any]) -> object:
        async with pool.connection() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()

    return {
        "get_run": lambda _: fetch(*get_run),
        "list_node_states (100 nodes)": lambda _: fetch(*states),
        "set_node_state": lambda _: fetch(set_sql, {**set_params, "node_id": next(nodes)}),
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def measure(url: str, *, tasks: int, seconds: float, rounds: int, pool: int) -> list[str]:
    """Run every workload for every contender, ``rounds`` times; the Markdown table of the results."""
    with connect(url, max_size=pool) as db:
        upgrade(db)
        sync_store = WorkflowStore(db)
        run_id, _ = prepare_data(sync_store)
        async with connect_async(url, max_size=pool) as async_db:
            contenders = [
                Contender("async store", store_workloads(AsyncWorkflowStore(async_db), run_id, sync=False)),
                Contender("sync store, to_thread", store_workloads(sync_store, run_id, sync=True)),
            ]
            bare_pool = None
            if db.dialect == "postgresql":
                from psycopg_pool import AsyncConnectionPool

                bare_pool = AsyncConnectionPool(url, min_size=pool, max_size=pool, open=False,
                                                kwargs={"autocommit": True})  # fmt: skip
                await bare_pool.open(wait=True)
                contenders.append(
                    Contender("bare psycopg async", bare_workloads(bare_pool, db, sync_store, run_id))
                )
            try:
                for round_ in range(rounds + 1):  # round 0 warms up
                    for workload in contenders[0].workloads:
                        for contender in contenders:
                            rate, lags = await run_workload(contender.workloads[workload], tasks, seconds)
                            if round_:
                                contender.rates.setdefault(workload, []).append(rate)
                                contender.lags.setdefault(workload, []).extend(lags)
                    print(f"[{time.strftime('%H:%M:%S')}] async round {round_} of {rounds}", file=sys.stderr)
            finally:
                if bare_pool is not None:
                    await bare_pool.close()
    return table(contenders)


def table(contenders: list[Contender]) -> list[str]:
    """Markdown lines: a row per workload, each contender's calls/s and loop lag, and the ratios."""
    names = [contender.name for contender in contenders]
    lines = [
        "| workload, 200 tasks | " + " | ".join(f"{name}: calls/s, lag p50 / p99 ms" for name in names)
        + " | async / to_thread calls/s | async cost / bare async |",
        "|---" * (len(names) + 3) + "|",
    ]  # fmt: skip
    for workload in contenders[0].workloads:
        rates = [statistics.median(contender.rates[workload]) for contender in contenders]
        cells = [
            f"{rate:,.0f}, {_lags(contender.lags[workload])}"
            for rate, contender in zip(rates, contenders, strict=True)
        ]
        bare = f"{rates[2] / rates[0]:.2f}" if len(rates) > 2 else "n/a"
        lines.append(f"| {workload} | {' | '.join(cells)} | {rates[0] / rates[1]:.2f} | {bare} |")
    return lines


def _lags(lags: list[float]) -> str:
    return f"{_percentile(lags, 0.5):.2f} / {_percentile(lags, 0.99):.2f}"


def main(argv: list[str] | None = None) -> int:
    """Run the async section alone and print its rows; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="a database (migrated here); the section adds its own run"
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=1.0, help="how long each workload runs a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=4, help="connections in each PostgreSQL pool")
    args = parser.parse_args(argv)
    lines = asyncio.run(
        measure(args.url, tasks=args.tasks, seconds=args.seconds, rounds=args.rounds, pool=args.pool)
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

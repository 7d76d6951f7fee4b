"""Concurrent writers of different runs on PostgreSQL: does the change feed make them queue?

    python scripts/bench_writers.py --url postgresql://root@127.0.0.1/bench_writers [--writers 16]

The database named by ``--url`` is dropped and made again. ``--writers``
asyncio tasks, each writing ``set_node_state`` to a run of its own, on one
AsyncWorkflowStore with a pool of that size, for ``--seconds`` a round; the
contenders take turns over ``--rounds`` rounds:

* ``store``: the store as shipped (each process announces its commits with
  one coalesced NOTIFY, outside every writer's transaction);
* ``store, no wake-up signal``: the same calls with that announcing switched
  off (the feed's rows are still written);
* ``plain UPDATE``: one row of a one-table database per writer, updated in
  autocommit on a connection of its own (the floor the server sets).

Meanwhile a watcher in another process (LISTEN on the same server) echoes a
probe run's changes; in both store rounds a probe writes it every 20 ms, and
in the first the latency runs from the probe call's return to the echo. A
sampler reads what the active backends wait on every 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from workflow_db import AsyncWorkflowStore, WorkflowGraph, connect, connect_async
from workflow_db.migrate import upgrade

PROBE_GAP = 0.02


def _admin_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def fresh_database(url: str) -> None:
    """Drop and create the database ``url`` names, then migrate it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin_url(url), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(url) as db:
        upgrade(db)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_plain (id integer PRIMARY KEY, v double precision)")
        conn.execute("INSERT INTO bench_plain SELECT i, 0 FROM generate_series(0, 999) AS i")


async def timed_loop(workers: int, seconds: float, call: Callable[[int, int], Awaitable[object]]) -> float:
    """Calls a second of ``workers`` tasks each calling ``call(worker, i)`` for ``seconds``."""
    stop = time.monotonic() + seconds
    counts = [0] * workers

    async def worker(index: int) -> None:
        while time.monotonic() < stop:
            await call(index, counts[index])
            counts[index] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(index) for index in range(workers)))
    return sum(counts) / (time.monotonic() - started)


class WaitSampler:
    """What PostgreSQL's active client backends wait on, sampled every 5 ms while on."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.counts: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            while True:
                cursor = await conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity"
                    " WHERE state = 'active' AND backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid() AND datname = current_database()"
                )
                for (event,) in await cursor.fetchall():
                    self.counts[event] += 1
                self.samples += 1
                await asyncio.sleep(0.005)

    def start(self) -> None:
        self.counts.clear()
        self.samples = 0
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> str:
        assert self._task is not None
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        total = sum(self.counts.values()) or 1
        top = ", ".join(f"{event} {count / total:.0%}" for event, count in self.counts.most_common(3))
        return top or "-"


class LatencyProbe:
    """A watcher in another process echoing a probe run's changes; the probe writes every 20 ms."""

    def __init__(self, url: str, store: AsyncWorkflowStore, run_id: str) -> None:
        self._store, self._run_id = store, run_id
        self._watcher = subprocess.Popen(
            [sys.executable, __file__, "watch", url, run_id], stdout=subprocess.PIPE, text=True
        )
        assert self._watcher.stdout is not None
        if self._watcher.stdout.readline() != "ready\n":
            raise SystemExit("the watcher process did not start")
        self._returned: dict[float, float | None] = {}  # None: the call has not returned yet
        self._probes = iter(range(1, 1_000_000))
        self.latencies: list[float] = []
        self._echoes = asyncio.get_running_loop().run_in_executor(None, self._read_echoes)

    async def write(self, seconds: float, *, timed: bool) -> None:
        """Write a probe every PROBE_GAP for ``seconds``; ``timed``: their latencies count."""
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            progress = next(self._probes) / 1_000_000  # each probe its own value, in every round
            if timed:
                self._returned[progress] = None
            await self._store.set_node_state(self._run_id, "a", progress=progress)
            if timed:
                self._returned[progress] = time.time()
            await asyncio.sleep(PROBE_GAP)

    def _read_echoes(self) -> None:
        assert self._watcher.stdout is not None
        for line in self._watcher.stdout:
            seen, _, at = line.partition(" ")
            if float(seen) in self._returned:  # seen before the writer saw its call return: no delay
                sent = self._returned[float(seen)] or float(at)
                self.latencies.append(max(0.0, float(at) - sent) * 1000)

    async def stop(self) -> str:
        """End the watcher; the latencies' summary."""
        await asyncio.sleep(0.2)
        self._watcher.terminate()
        await self._echoes
        latencies = sorted(self.latencies)
        if not latencies:
            return "no probe came back"
        p50, p99 = statistics.median(latencies), latencies[max(0, int(len(latencies) * 0.99) - 1)]
        return (
            f"a change to a watcher in another process under that load: p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms over {len(latencies)} probes (target p99 <= 50)"
        )


async def main_async(url: str, writers: int, seconds: float, rounds: int) -> list[str]:
    """Measure every contender ``rounds`` times, in turns; the report's lines."""
    db = await connect_async(url, min_size=writers, max_size=writers + 2)
    store = AsyncWorkflowStore(db)
    await store.ensure_project("bench")
    graph = await store.create_graph(WorkflowGraph("bench", "g", {"nodes": [{"id": "a"}, {"id": "b"}]}))
    runs = [(await store.create_run(graph.id, id=f"run-{index}")).id for index in range(writers)]
    plain = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(writers)]

    async def store_call(worker: int, count: int) -> None:
        await store.set_node_state(runs[worker], "a", progress=(count % 1000) / 1000)

    async def plain_call(worker: int, count: int) -> None:
        await plain[worker].execute(
            "UPDATE bench_plain SET v = %s WHERE id = %s", ((count % 1000) / 1000, worker)
        )

    probe = LatencyProbe(url, store, (await store.create_run(graph.id, id="probe")).id)
    sampler = WaitSampler(url)
    results: dict[str, list[float]] = collections.defaultdict(list)
    waits: dict[str, str] = {}
    contenders: dict[str, Callable[[int, int], Awaitable[object]]] = {
        "store": store_call,
        "store, no wake-up signal": store_call,
        "plain UPDATE": plain_call,
    }
    for _ in range(rounds):
        for name, call in contenders.items():
            db.announce_commits = name != "store, no wake-up signal"  # type: ignore[attr-defined]
            sampler.start()
            # Both store rounds write the probe (the same load); the announced one times it.
            probing = probe.write(seconds, timed=name == "store") if call is store_call else asyncio.sleep(0)
            results[name].append((await asyncio.gather(timed_loop(writers, seconds, call), probing))[0])
            waits[name] = await sampler.stop()
    latency = await probe.stop()
    for conn in plain:
        await conn.close()
    await db.close()
    best = {name: statistics.median(values) for name, values in results.items()}
    lines = [
        f"{writers} concurrent writers of different runs, PostgreSQL, {platform.node()}, "
        f"{os.cpu_count()} cores, {rounds} rounds of {seconds:g} s",
        "",
        "| contender | calls/s (median) | every round | active backends wait on |",
        "|---|---|---|---|",
    ]
    for name in contenders:
        every = " / ".join(f"{value:,.0f}" for value in results[name])
        lines.append(f"| {name} | {best[name]:,.0f} | {every} | {waits[name]} |")
    return [
        *lines,
        "",
        f"store / no wake-up signal: {best['store'] / best['store, no wake-up signal']:.2f}x "
        f"(target >= 0.9); store / plain UPDATE: {best['store'] / best['plain UPDATE']:.2f}x (target >= 0.4)",
        latency,
    ]


async def watch(url: str, run_id: str) -> None:
    """The watcher process: echo ``progress time.time()`` for each change of ``run_id``."""
    async with await connect_async(url, listen_url=url) as db:
        store = AsyncWorkflowStore(db)
        changes = await store.list_changes(run_id=run_id, limit=10**6)
        after = changes[-1].seq if changes else None
        await db.listen_for_changes()
        while not getattr(db, "listening", False):
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        async for change in store.watch(after, run_id=run_id):
            if change.node_state is not None:
                print(f"{change.node_state.progress} {time.time()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, as ``watch URL RUN``, its watcher process); return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch"]:
        with suppress(KeyboardInterrupt):
            asyncio.run(watch(argv[1], argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database to DROP and create")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.url.startswith("postgres"):
        parser.error("--url: a postgresql:// URL (the question is PostgreSQL's commit lock)")
    fresh_database(args.url)
    print("\n".join(asyncio.run(main_async(args.url, args.writers, args.seconds, args.rounds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

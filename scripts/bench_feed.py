"""The change feed's costs, for scripts/bench.py: cross-process latency, watchers' cost, pages.

Watchers run in a process of their own (``python scripts/bench_feed.py watch``,
asyncio tasks on one AsyncWorkflowStore), as a service replica's would, while
this process writes:

* latency: one watcher echoes each change it gets with ``time.monotonic()``
  (the same clock in every process); a write starts at a random moment and
  its latency runs from the start of the call to the echo;
* cost: ``set_node_state`` timed in blocks with 100 watchers open in that
  process and with none (the process keeps its database and LISTEN), taking turns;
  ``python scripts/bench_feed.py in-process URL`` times it with 100 watcher
  tasks on the writer's own event loop (a migrated database).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from workflow_db import AsyncWorkflowStore, WorkflowGraph, WorkflowRun, WorkflowStore, connect_async
from workflow_db import queries as q
from workflow_db.dialects.base import fetch_one

LATENCY_SAMPLES = 200
WATCHERS = 100
COST_BLOCKS = 20
COST_CALLS = 100


class Report(Protocol):
    """What bench.py's report offers."""

    def add(self, name: str, store: tuple[float, float], bare: tuple[float, float] | None = None) -> None: ...
    def note(self, name: str, value: str) -> None: ...


def listen_url(url: str) -> str | None:
    """The benchmark's LISTEN connection: the same direct server (None on SQLite)."""
    return url if url.startswith("postgres") else None


@contextmanager
def watchers(url: str, count: int, echo: bool) -> Iterator[subprocess.Popen[str]]:
    """A process with ``count`` watchers from the feed's head, ready (listening, on PostgreSQL)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "watch", url, str(count), "echo" if echo else "quiet"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        line = process.stdout.readline()
        if line != "ready\n":
            raise SystemExit(f"the watcher process did not start: {line!r}")
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=60)


def number_pending(store: WorkflowStore) -> None:
    """Have PostgreSQL number every pending change (a watcher's first reads would)."""
    head = -1
    while True:
        store.list_changes(limit=1)
        row = store.db.read(q.CHANGE_HEAD, (), fetch_one)
        if row is None or int(row[0]) == head:
            return
        head = int(row[0])


def measure_latency(report: Report, store: WorkflowStore, url: str, run: WorkflowRun) -> None:
    """From the start of a set_node_state call here to a watcher in another process getting it."""
    chosen = random.Random(7)
    samples = []
    number_pending(store)
    with watchers(url, 1, echo=True) as process:
        assert process.stdout is not None
        for index in range(LATENCY_SAMPLES):
            time.sleep(chosen.uniform(0, 2 * store.db.poll_interval))  # a moment unrelated to polling
            progress = index / LATENCY_SAMPLES
            started = time.monotonic()
            store.set_node_state(run.id, "node-001", progress=progress)
            while True:  # the watcher's echo of this very change
                seen, _, at = process.stdout.readline().partition(" ")
                if float(seen) == progress:
                    break
            samples.append((float(at) - started) * 1000)
    samples.sort()
    how = "LISTEN/NOTIFY" if listen_url(url) else f"polling every {store.db.poll_interval:g} s"
    report.add(
        f"change to a watcher in another process ({how}), median / p99",
        (statistics.median(samples), samples[int(len(samples) * 0.99) - 1]),
    )


def measure_watcher_cost(report: Report, store: WorkflowStore, url: str, run: WorkflowRun) -> None:
    """set_node_state with 100 watchers in another process, and with none, in turns.

    One process for the whole measurement (its start-up would weigh on the
    first block), told on stdin to stop its watchers (it keeps its database
    and, on PostgreSQL, its LISTEN) and to start them again from the head,
    twenty blocks each.
    """
    nodes = itertools.cycle([f"node-{index:03d}" for index in range(100)])

    def block() -> list[float]:
        times = []
        for _ in range(COST_CALLS):
            started = time.perf_counter()
            store.set_node_state(run.id, next(nodes), progress=0.3)
            times.append((time.perf_counter() - started) * 1000)
        return times

    alone: list[float] = []
    watched: list[float] = []
    with watchers(url, WATCHERS, echo=False) as process:
        block()  # warm-up
        for _ in range(COST_BLOCKS):
            _tell(process, "stop")
            alone += block()
            _tell(process, "start")
            watched += block()
    results = [(statistics.median(t), sorted(t)[int(len(t) * 0.95)]) for t in (alone, watched)]
    report.add("set_node_state, no watcher", results[0])
    report.add(f"set_node_state, {WATCHERS} watchers in another process", results[1])
    report.note(f"set_node_state: {WATCHERS} watchers / none", f"{results[1][0] / results[0][0]:.2f}x")


def _tell(process: subprocess.Popen[str], command: str) -> None:
    """Send the watcher process a command and wait for it to be done."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()
    if process.stdout.readline() != "done\n":
        raise SystemExit(f"the watcher process did not {command}")


Timer = Callable[..., list[tuple[float, float]]]


def measure_pages(report: Report, stores: dict[str, WorkflowStore], timed: Timer, repeat: int) -> None:
    """The feed's first page of 1,000, and one project's, on each database in the same rounds.

    The bigger database holds the smaller one's data first (the scale set was
    loaded after it), so both read the same changes from tables of different sizes.
    """
    calls = []
    for store in stores.values():
        calls.append(lambda store=store: store.list_changes(0, limit=1000))
        calls.append(lambda store=store: store.list_changes(0, project_id="proj_7", limit=1000))
    timings = timed(*calls, repeat=repeat)
    for index, label in enumerate(stores):
        report.add(f"list_changes page of 1,000 ({label})", timings[2 * index])
        report.add(f"list_changes page of 1,000 of one project ({label})", timings[2 * index + 1])
    if len(stores) == 2:
        labels = list(stores)
        for offset, what in ((0, "page"), (1, "project page")):
            ratio = timings[2 + offset][0] / timings[offset][0]
            report.note(f"list_changes {what}: {labels[1]} / {labels[0]}", f"{ratio:.2f}x")


async def _watch(url: str, count: int, echo: bool) -> None:
    """The watcher process: ``count`` watchers from the head; stdin says ``stop`` and ``start``
    (answered ``done``), and closing it ends the process."""
    db = await connect_async(url, listen_url=listen_url(url))
    store = AsyncWorkflowStore(db)
    loop = asyncio.get_running_loop()

    async def head() -> int:
        seq = -1
        while True:  # PostgreSQL: what is pending gets numbered (a batch a read), below the head
            await store.list_changes(limit=1)
            row = await db.read(q.CHANGE_HEAD, (), fetch_one)
            if row is None or int(row[0]) == seq:
                return seq
            seq = int(row[0])

    async def watch(index: int, after: int) -> None:
        async for change in store.watch(after):
            if echo and index == 0 and change.node_state is not None:
                sys.stdout.write(f"{change.node_state.progress} {time.monotonic()}\n")
                sys.stdout.flush()

    async def start() -> list[asyncio.Task[None]]:
        after = await head()
        started = [asyncio.create_task(watch(index, after)) for index in range(count)]
        await asyncio.sleep(0.2)  # every watcher past its first look at the feed
        return started

    async def stop(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    await db.listen_for_changes()
    while listen_url(url) and not getattr(db, "listening", False):
        await asyncio.sleep(0.01)
    tasks = await start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        await stop(tasks)
        tasks = await start() if command == "start" else []
        sys.stdout.write("done\n")
        sys.stdout.flush()
    await stop(tasks)
    await db.close()


async def in_process(url: str, blocks: int = 10) -> str:
    """set_node_state on AsyncWorkflowStore with 100 watcher tasks on the same event loop, and with none.

    The database must be migrated; a project, graph and run of 100 nodes are added.
    """
    db = await connect_async(url)
    store = AsyncWorkflowStore(db)
    await store.ensure_project("bench_feed")
    graph = await store.create_graph(
        WorkflowGraph("bench_feed", "feed", {"nodes": [{"id": f"n{index}"} for index in range(100)]})
    )
    run = await store.create_run(graph.id)

    async def block() -> list[float]:
        times = []
        for index in range(COST_CALLS):
            started = time.perf_counter()
            await store.set_node_state(run.id, f"n{index % 100}", progress=0.3)
            times.append((time.perf_counter() - started) * 1000)
        return times

    async def watch() -> None:
        async for _ in store.watch(2**62):  # woken by every write, never given a change
            pass

    alone: list[float] = []
    watched: list[float] = []
    await block()
    for _ in range(blocks):
        alone += await block()
        tasks = [asyncio.create_task(watch()) for _ in range(WATCHERS)]
        await asyncio.sleep(0.1)
        watched += await block()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await db.close()
    none, hundred = statistics.median(alone), statistics.median(watched)
    return (
        f"in one process: set_node_state {none:.3f} ms alone, "
        f"{hundred:.3f} ms with {WATCHERS} watchers: {hundred / none:.2f}x"
    )


def main(argv: list[str] | None = None) -> int:
    """``watch URL COUNT echo|quiet``: the watcher process; ``in-process URL``: print that measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["watch", "in-process"])
    parser.add_argument("url")
    parser.add_argument("count", type=int, nargs="?", default=WATCHERS)
    parser.add_argument("mode", choices=["echo", "quiet"], nargs="?", default="quiet")
    args: Any = parser.parse_args(argv)
    if args.command == "in-process":
        print(asyncio.run(in_process(args.url)))
        return 0
    asyncio.run(_watch(args.url, args.count, args.mode == "echo"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How many pooled PostgreSQL connections a process needs: calls a second by threads and pool size.

    python scripts/bench_pool.py --url postgresql://user@host/bench [--seconds 2]

Each cell: ``threads`` threads (or, in the last row, 200 asyncio tasks on the
async store) making the service's mix of calls for ``--seconds`` on a store
whose pool holds ``max_size`` connections: per call, ``set_node_state`` on its
own run, ``get_run`` and ``list_node_states``. The database is migrated here
and gets a graph and a run per thread. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import threading
import time
from collections.abc import Callable

from workflow_db import AsyncWorkflowStore, WorkflowGraph, WorkflowStore, connect, connect_async
from workflow_db.migrate import upgrade

THREADS = (1, 4, 16, 64)
POOL_SIZES = (2, 4, 8, 16)
TASKS = 200
NODES = 10


def prepare(url: str, runs: int) -> list[str]:
    """A project, a 10-node graph and ``runs`` runs of it; their ids."""
    with connect(url) as db:
        upgrade(db)
        store = WorkflowStore(db)
        store.ensure_project("bench_pool")
        nodes = [{"id": f"n{index}"} for index in range(NODES)]
        graph = store.create_graph(WorkflowGraph("bench_pool", "pool", {"nodes": nodes}))
        return [store.create_run(graph.id).id for _ in range(runs)]


def threaded(url: str, run_ids: list[str], threads: int, pool: int, seconds: float) -> float:
    """Calls a second of ``threads`` threads sharing a store with a pool of ``pool``."""
    with connect(url, min_size=pool, max_size=pool) as db:
        store = WorkflowStore(db)
        counts = [0] * threads
        barrier = threading.Barrier(threads + 1)
        deadline = [0.0]

        def work(index: int) -> None:
            run_id, nodes = run_ids[index], itertools.cycle(range(NODES))
            barrier.wait()
            while time.perf_counter() < deadline[0]:
                one_mix(store.set_node_state, store.get_run, store.list_node_states, run_id, next(nodes))
                counts[index] += 3

        workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        deadline[0] = time.perf_counter() + seconds
        barrier.wait()
        for worker in workers:
            worker.join()
        return sum(counts) / seconds


def one_mix(
    set_state: Callable[..., object], get_run: Callable[..., object], list_states: Callable[..., object],
    run_id: str, node: int,
) -> None:  # fmt: skip
    """The mix: a node write, then two reads of the run."""
    set_state(run_id, f"n{node}", progress=0.5)
    get_run(run_id)
    list_states(run_id)


async def tasks(url: str, run_ids: list[str], pool: int, seconds: float) -> float:
    """Calls a second of 200 tasks sharing an async store with a pool of ``pool``."""
    async with connect_async(url, min_size=pool, max_size=pool) as db:
        store = AsyncWorkflowStore(db)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        count = 0

        async def work(run_id: str) -> None:
            nonlocal count
            nodes = itertools.cycle(range(NODES))
            while loop.time() < deadline:
                await store.set_node_state(run_id, f"n{next(nodes)}", progress=0.5)
                await store.get_run(run_id)
                await store.list_node_states(run_id)
                count += 3

        await asyncio.gather(*(work(run_id) for run_id in run_ids[:TASKS]))
        return count / seconds


def main(argv: list[str] | None = None) -> int:
    """Measure every cell and print the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database (migrated here)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell (default 2)")
    args = parser.parse_args(argv)
    if not args.url.startswith(("postgresql:", "postgres:")):
        parser.error("the pool is PostgreSQL's: give a postgresql:// URL")
    run_ids = prepare(args.url, max(*THREADS, TASKS))
    print("| calls/s | " + " | ".join(f"pool of {size}" for size in POOL_SIZES) + " |")
    print("|---" * (len(POOL_SIZES) + 1) + "|")
    for threads in THREADS:
        cells = [threaded(args.url, run_ids, threads, size, args.seconds) for size in POOL_SIZES]
        print(
            f"| {threads} thread{'s' if threads > 1 else ''} | "
            + " | ".join(f"{c:,.0f}" for c in cells)
            + " |"
        )
        sys.stdout.flush()
    cells = [asyncio.run(tasks(args.url, run_ids, size, args.seconds)) for size in POOL_SIZES]
    print(f"| {TASKS} asyncio tasks | " + " | ".join(f"{c:,.0f}" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

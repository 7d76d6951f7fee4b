"""Read replicas and failover, measured on throw-away PostgreSQL clusters of its own.

    python scripts/bench_replicas.py [--seconds 5] [--processes 2] [--threads 4] [--runs 2000]

Needs ``initdb``, ``pg_ctl`` and ``pg_basebackup`` (run as root, it runs them as ``postgres``); it
starts a primary and a streaming replica on free ports of 127.0.0.1 and never touches another
server. It prints:

* **reads/s** with 0 and 1 replicas: ``--processes`` x ``--threads`` closed-loop readers (a mix
  of ``get_run``, ``list_runs`` of 20 and ``run_summary``) for ``--seconds`` each, over ``--runs`` runs;
* **read-your-writes**: ``set_node_state`` then at once ``get_node_state`` of the same run, alone and
  beside writers of other runs: the read's p50 / p99 with 0 and 1 replicas, and how far the replica
  lags a commit (commit to replayed, p50 / p99);
* **failover**: writers on a multi-host URL, the primary stopped at once (``-m immediate``) and its
  standby promoted: primary loss to promoted, to the first write that succeeds, and the acknowledged
  writes the promoted standby does not have, with a synchronous and with an asynchronous standby.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_cluster import ThrowawayCluster

from workflow_db import DatabaseUnavailableError, WorkflowGraph, WorkflowStore, connect
from workflow_db.dialects.replicas import REPLAY_POSITION, WAL_POSITION, lsn, position_in
from workflow_db.migrate import upgrade

NODES = {"nodes": [{"id": "a"}, {"id": "b"}], "edges": [{"source": "a", "target": "b"}]}


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def milliseconds(samples: list[float]) -> str:
    """``p50 / p99`` of ``samples`` (seconds) in milliseconds."""
    return f"{percentile(samples, 0.5) * 1e3:.2f} / {percentile(samples, 0.99) * 1e3:.2f} ms"


@contextlib.contextmanager
def clusters(synchronous: bool = False) -> Iterator[tuple[ThrowawayCluster, ThrowawayCluster]]:
    """A primary and a streaming standby of it; with ``synchronous``, every commit waits for it."""
    primary = ThrowawayCluster.start(Path(tempfile.mkdtemp(prefix="workflow_db-bench-")))
    if primary is None:
        raise SystemExit("initdb and pg_ctl are needed: install PostgreSQL's server binaries")
    standby = None
    try:
        standby = ThrowawayCluster.standby_of(primary)
        if synchronous:
            with psycopg.connect(primary.url, autocommit=True) as admin:
                admin.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                admin.execute("SELECT pg_reload_conf()")
                while (
                    admin.execute("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()
                    is None
                ):
                    time.sleep(0.05)
        yield primary, standby
    finally:
        primary.remove()
        if standby is not None:
            standby.remove()


def load_runs(url: str, count: int) -> list[str]:
    """Migrate, and create ``count`` runs of one graph (each with a node state written)."""
    with connect(url) as db:
        upgrade(db)
        store = WorkflowStore(db)
        store.ensure_project("bench")
        graph = store.create_graph(WorkflowGraph("bench", "g", NODES))
        runs = []
        with store.transaction():
            for _ in range(count):
                runs.append(store.create_run(graph.id).id)
                store.set_node_state(runs[-1], "a", progress=0.5)
        return runs


def read_loop(arguments: tuple[str, list[str], list[str], int, float]) -> int:
    """One reader process: ``threads`` threads reading for ``seconds``; how many reads they made."""
    url, replica_urls, runs, threads, seconds = arguments
    counts = [0] * threads
    with connect(url, replica_urls=replica_urls, max_size=threads) as db:
        store = WorkflowStore(db)
        start = time.monotonic()

        def reader(index: int) -> None:
            pick = random.Random(index)
            calls: list[Callable[[str], object]] = [
                store.get_run,
                lambda run_id: store.list_runs(project_id="bench", limit=20),
                store.run_summary,
            ]
            while time.monotonic() - start < seconds:
                calls[counts[index] % 3](pick.choice(runs))
                counts[index] += 1

        workers = [threading.Thread(target=reader, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return sum(counts)


def reads_per_second(
    url: str, replica_urls: list[str], runs: list[str], options: argparse.Namespace
) -> float:
    """Reads per second of ``--processes`` x ``--threads`` readers."""
    work = [(url, replica_urls, runs, options.threads, options.seconds)] * options.processes
    with multiprocessing.get_context("spawn").Pool(options.processes) as pool:
        reads: list[int] = pool.map(read_loop, work)
    return sum(reads) / float(options.seconds)


def read_after_write(
    url: str, replica_urls: list[str], runs: list[str], count: int, writers: int
) -> list[float]:
    """Seconds of ``get_node_state`` right after ``set_node_state`` of the same run, ``count`` times,
    with ``writers`` threads writing other runs meanwhile."""
    samples: list[float] = []
    done = threading.Event()
    with connect(url, replica_urls=replica_urls, max_size=writers + 2) as db:
        store = WorkflowStore(db)

        def writer(index: int) -> None:
            while not done.is_set():
                store.set_node_state(runs[index + 1], "b", progress=random.random())

        background = [threading.Thread(target=writer, args=(index,)) for index in range(writers)]
        for thread in background:
            thread.start()
        try:
            for step in range(count):
                store.set_node_state(runs[0], "a", progress=step / count)
                started = time.perf_counter()
                state = store.get_node_state(runs[0], "a")
                samples.append(time.perf_counter() - started)
                assert state is not None and state.progress == step / count, "a stale read of our own write"
        finally:
            done.set()
            for thread in background:
                thread.join()
    return samples


def replay_lag(primary: ThrowawayCluster, standby: ThrowawayCluster, count: int) -> list[float]:
    """Seconds from a commit on the primary until the standby has replayed it."""
    samples = []
    with (
        psycopg.connect(primary.url, autocommit=True) as writer,
        psycopg.connect(standby.url, autocommit=True) as reader,
    ):
        writer.execute("CREATE TABLE IF NOT EXISTS bench_lag (id int PRIMARY KEY, n int)")
        for step in range(count):
            writer.execute(
                "INSERT INTO bench_lag VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET n = %s", (step, step)
            )
            position = lsn(position_in(writer.execute(WAL_POSITION).fetchone())) or 0
            started = time.perf_counter()
            while (lsn(position_in(reader.execute(REPLAY_POSITION).fetchone())) or 0) < position:
                pass
            samples.append(time.perf_counter() - started)
    return samples


def failover(synchronous: bool, writers: int) -> tuple[float, float, int, int]:
    """(loss to promoted, loss to first write, acknowledged, acknowledged but lost) in one failover."""
    with clusters(synchronous) as (primary, standby):
        url = (
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
            "?target_session_attrs=read-write"
        )
        acknowledged: list[str] = []
        first_after: list[float] = []
        lost_at = [float("inf")]
        done = threading.Event()
        with connect(url, timeout=30, max_size=writers) as db:
            upgrade(db)
            store = WorkflowStore(db)
            store.ensure_project("bench")
            graph = store.create_graph(WorkflowGraph("bench", "g", NODES))

            def writer() -> None:
                while not done.is_set():
                    started = time.monotonic()
                    try:
                        run = store.create_run(graph.id)
                    except DatabaseUnavailableError:
                        continue
                    acknowledged.append(run.id)
                    if started > lost_at[0]:  # a write sent after the loss, acknowledged
                        first_after.append(time.monotonic())

            threads = [threading.Thread(target=writer) for _ in range(writers)]
            for thread in threads:
                thread.start()
            while len(acknowledged) < 500:
                time.sleep(0.01)
            primary.stop()  # returns once the server is gone
            lost_at[0] = time.monotonic()
            standby.promote()
            promoted = time.monotonic()
            while not first_after:
                time.sleep(0.001)
            done.set()
            for thread in threads:
                thread.join()
            found = {run.id for run in store.list_runs(project_id="bench", limit=10_000)}
        lost = sum(1 for run_id in acknowledged if run_id not in found)
        return promoted - lost_at[0], first_after[0] - lost_at[0], len(acknowledged), lost


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of reading per configuration")
    parser.add_argument("--processes", type=int, default=2, help="reader processes")
    parser.add_argument("--threads", type=int, default=4, help="reader threads per process")
    parser.add_argument("--runs", type=int, default=2000, help="runs in the database")
    parser.add_argument("--writes", type=int, default=1000, help="read-after-write samples per row")
    options = parser.parse_args()
    logging.getLogger("psycopg").setLevel(
        logging.CRITICAL
    )  # the pools' reconnection attempts during failover
    print(
        f"bench_replicas: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}; primary and replica on this machine"
    )
    with clusters() as (primary, replica):
        runs = load_runs(primary.url, options.runs)
        with psycopg.connect(replica.url) as check:  # the replica has replayed the load
            while check.execute("SELECT count(*) FROM workflow_runs").fetchone() != (options.runs,):
                time.sleep(0.05)
        readers = f"{options.processes} processes x {options.threads} threads"
        print(f"\n## reads/s, {readers}, {options.seconds:g} s each\n")
        print("| replicas | reads/s |\n|---|---|")
        for replica_urls in ([], [replica.url]):
            print(
                f"| {len(replica_urls)} | {reads_per_second(primary.url, replica_urls, runs, options):,.0f} |"
            )
        print(f"\n## read-your-writes: get_node_state right after set_node_state, {options.writes} times\n")
        print("| replicas | writers of other runs | read p50 / p99 |\n|---|---|---|")
        for writers in (0, 4):
            for replica_urls in ([], [replica.url]):
                samples = read_after_write(primary.url, replica_urls, runs, options.writes, writers)
                print(f"| {len(replica_urls)} | {writers} | {milliseconds(samples)} |")
        lag = milliseconds(replay_lag(primary, replica, options.writes))
        print(f"\nreplay lag, commit to replayed on the replica, p50 / p99: {lag}")
    print("\n## failover: 4 writers, the primary stopped at once, its standby promoted\n")
    print("| standby | loss to promoted | loss to first write | acknowledged | acknowledged, lost |")
    print("|---|---|---|---|---|")
    for synchronous in (True, False):
        to_promoted, to_write, acknowledged, lost = failover(synchronous, 4)
        kind = "synchronous" if synchronous else "asynchronous"
        print(f"| {kind} | {to_promoted * 1e3:.0f} ms | {to_write * 1e3:.0f} ms | {acknowledged} | {lost} |")


if __name__ == "__main__":
    main()

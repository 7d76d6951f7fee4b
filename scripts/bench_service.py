"""The example service (examples/service/) under load: in memory, then on PostgreSQL with 1 and 3 replicas.

    python scripts/bench_service.py --url postgresql://root@127.0.0.1/bench_service [--runs 200]

The database named by ``--url`` is dropped and made again for each
PostgreSQL scenario. Each scenario starts its replicas (uvicorn processes on
127.0.0.1), submits ``--runs`` runs of a six-node graph at once, spread over
the replicas, while ``--readers`` closed-loop readers GET a run and its
summary in turns and a Server-Sent-Events client per replica follows the
project. It prints, per scenario: runs completed per second, GET run and
summary p50 / p99, the executors' node writes p50 / p99, commit-to-client
delivery of run changes p50 / p99 (from the moment an executor's status write
returned, committed, to its event reaching the client: both clocks are this
machine's), and what PostgreSQL's active backends waited on. Below the table:
the same deliveries counted from the run's ``updated_at`` instead, which the
caller stamps before its write waits for a connection and its locks. With
three replicas one is SIGKILLed once half the runs are done: kill-to-resume is
the time until every run it held has been taken over by another replica.
The first scenario is the same app on dictionaries (``WORKFLOW_DB_URL=memory:``):
the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_writers import WaitSampler, fresh_database

ROOT = Path(__file__).resolve().parent.parent
NODES = ["start", "retrieve", "rerank", "generate", "review", "finalize"]
SETTINGS = {"SERVICE_LEASE_SECONDS": "6", "SERVICE_STEP_SECONDS": "0.02", "SERVICE_STEPS": "3"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One uvicorn process of the example service."""

    def __init__(self, url: str, write_slots: int) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            **SETTINGS,
            "WORKFLOW_DB_URL": url,
            "WORKFLOW_DB_LISTEN_URL": url if url.startswith("postgres") else "",
            "SERVICE_POOL_SIZE": "8",
            "SERVICE_WRITE_SLOTS": str(write_slots),
            "PYTHONPATH": str(ROOT),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.service.app:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            env=env,
            cwd=ROOT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        self.owner = ""

    async def ready(self, client: httpx.AsyncClient) -> None:
        for _ in range(600):
            if self.process.poll() is not None:
                raise SystemExit(f"a replica exited with {self.process.returncode}")
            try:
                self.owner = (await client.get(f"{self.base}/healthz")).json()["owner"]
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        raise SystemExit("a replica did not answer within 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=60)


def _p(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def _pair(values: list[float]) -> str:
    return f"{_p(values, 0.5):.1f} / {_p(values, 0.99):.1f}" if values else "-"


@dataclass
class Scenario:
    """One measured configuration and what it measured."""

    name: str
    url: str
    replicas: int
    kill: bool = False
    readers: int = 4
    write_slots: int = 6
    """Node writes each replica's executors make at once (its pool has 8 connections)."""
    runs_per_second: float = 0.0
    get_run: list[float] = field(default_factory=list)
    summary: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    since_updated_at: list[float] = field(default_factory=list)
    received: dict[str, float] = field(default_factory=dict)
    """When a run's status change first reached a client, by ``"run_id:status"``."""
    completed: set[str] = field(default_factory=set)
    """The runs a client has seen completed (on any replica's event stream)."""
    all_completed: asyncio.Event = field(default_factory=asyncio.Event)
    runs: int = 0
    writes: str = "-"
    kill_to_resume: str = "-"
    waits: str = "-"

    def row(self) -> str:
        return (
            f"| {self.name} | {self.runs_per_second:.1f} | {_pair(self.get_run)} | {_pair(self.summary)} | "
            f"{self.writes} | {_pair(self.delivery)} | {self.kill_to_resume} | {self.waits} |"
        )


async def follow(client: httpx.AsyncClient, replica: Replica, scenario: Scenario) -> None:
    """The project's events from one replica: when each run change arrived."""
    async with client.stream("GET", f"{replica.base}/projects/bench/events", timeout=None) as response:
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "workflow.run.updated":
                run = json.loads(line[6:])
                sent = datetime.fromisoformat(run["updated_at"]).timestamp()
                scenario.since_updated_at.append(max(0.0, time.time() - sent) * 1000)
                scenario.received.setdefault(f"{run['id']}:{run['status']}", time.time())
                if run["status"] == "completed":
                    scenario.completed.add(run["id"])
                    if len(scenario.completed) == scenario.runs:
                        scenario.all_completed.set()


async def read(client: httpx.AsyncClient, replicas: list[Replica], run_ids: list[str], out: Scenario) -> None:
    """A closed-loop reader: GET a run, then its summary, from the replicas in turns."""
    chosen = random.Random(len(out.get_run))
    while True:
        live = [r for r in replicas if r.process.poll() is None]
        if not run_ids or not live:
            await asyncio.sleep(0.01)
            continue
        replica, run_id = chosen.choice(live), chosen.choice(run_ids)
        for path, samples in (("", out.get_run), ("/summary", out.summary)):
            started = time.perf_counter()
            try:
                (await client.get(f"{replica.base}/projects/bench/runs/{run_id}{path}")).raise_for_status()
            except httpx.HTTPError:
                continue  # the replica was just killed
            samples.append((time.perf_counter() - started) * 1000)


async def runs_in(
    client: httpx.AsyncClient, replica: Replica, status: str, limit: int
) -> list[dict[str, Any]]:
    """The project's runs in ``status``, as one replica lists them."""
    response = await client.get(
        f"{replica.base}/projects/bench/runs", params={"status": status, "limit": limit}
    )
    runs: list[dict[str, Any]] = response.json()
    return runs


async def kill_one(client: httpx.AsyncClient, replicas: list[Replica], runs: int) -> str:
    """SIGKILL the first replica; the time until every run it held has another owner (or finished)."""
    doomed, survivor = replicas[0], replicas[-1]
    held = {
        run["id"] for run in await runs_in(client, survivor, "running", runs) if run["owner"] == doomed.owner
    }
    doomed.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    while held:
        for run_id in list(held):
            run = (await client.get(f"{survivor.base}/projects/bench/runs/{run_id}")).json()
            if run["status"] == "completed" or run["owner"] not in (None, doomed.owner):
                held.discard(run_id)
        await asyncio.sleep(0.02)
    return f"{time.monotonic() - killed_at:.2f} s"


async def read_stats(client: httpx.AsyncClient, replicas: list[Replica], scenario: Scenario) -> None:
    """The executors' node writes (the median of the replicas' p50, the worst p99), and the
    delivery of each status change from its write's return to the client."""
    stats = [(await client.get(f"{r.base}/stats")).json() for r in replicas if r.process.poll() is None]
    for replica_stats in stats:
        for key, written in replica_stats["status_written"].items():
            if key in scenario.received:
                scenario.delivery.append(max(0.0, scenario.received[key] - written) * 1000)
    stats = [s for s in stats if s["node_writes"]]
    if stats:
        p50 = statistics.median(s["p50_ms"] for s in stats)
        scenario.writes = f"{p50:.1f} / {max(s['p99_ms'] for s in stats):.1f}"


async def drive(client: httpx.AsyncClient, replicas: list[Replica], scenario: Scenario, runs: int) -> None:
    """Submit the runs, kill a replica if asked (once they are under way), wait for all to complete."""
    graph_body = {"name": "retrieval", "nodes": [{"id": n} for n in NODES]}
    graph = (await client.post(f"{replicas[0].base}/projects/bench/graphs", json=graph_body)).json()
    run_ids: list[str] = []
    scenario.runs = runs
    background = [asyncio.create_task(follow(client, r, scenario)) for r in replicas]
    background += [
        asyncio.create_task(read(client, replicas, run_ids, scenario)) for _ in range(scenario.readers)
    ]
    started = time.monotonic()

    async def submit(index: int) -> None:
        replica = replicas[index % len(replicas)]
        body = {"workflow_id": graph["id"], "input": {"n": index}}
        run_ids.append((await client.post(f"{replica.base}/projects/bench/runs", json=body)).json()["id"])

    await asyncio.gather(*(submit(index) for index in range(runs)))
    if scenario.kill:
        await asyncio.sleep(0.5)  # every run under way
        scenario.kill_to_resume = await kill_one(client, replicas, runs)
    try:  # a client learns that a run completed from the event stream, as a user's would
        await asyncio.wait_for(scenario.all_completed.wait(), 600)
    except TimeoutError:
        raise SystemExit(f"{scenario.name}: the runs did not complete within 600 s") from None
    scenario.runs_per_second = runs / (time.monotonic() - started)
    if len(await runs_in(client, replicas[-1], "completed", runs)) < runs:
        raise SystemExit(f"{scenario.name}: the events said every run completed, the database does not")
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)


async def measure(scenario: Scenario, runs: int) -> None:
    """Start the scenario's replicas (on a fresh database), drive them, stop them."""
    if scenario.url.startswith("postgres"):
        fresh_database(scenario.url)
    replicas = [Replica(scenario.url, write_slots=scenario.write_slots) for _ in range(scenario.replicas)]
    sampler = WaitSampler(scenario.url) if scenario.url.startswith("postgres") else None
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        try:
            for replica in replicas:
                await replica.ready(client)
            if sampler is not None:
                sampler.start()
            await drive(client, replicas, scenario, runs)
            if sampler is not None:
                scenario.waits = await sampler.stop()
            await read_stats(client, replicas, scenario)
        finally:
            for replica in replicas:
                replica.stop()


def main(argv: list[str] | None = None) -> int:
    """Run every scenario; print the table; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database to DROP and create")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--lease", type=float, default=6.0, help="the replicas' lease in seconds (default 6)")
    parser.add_argument(
        "--write-slots",
        type=int,
        default=6,
        help="node writes each replica's executors make at once (default 6; pools of 8 connections)",
    )
    args = parser.parse_args(argv)
    if not args.url.startswith("postgres"):
        parser.error("--url: a postgresql:// URL")
    SETTINGS["SERVICE_LEASE_SECONDS"] = f"{args.lease:g}"
    scenarios = [
        Scenario(
            "in memory (dicts), 1 replica", "memory:", 1, readers=args.readers, write_slots=args.write_slots
        ),
        Scenario("PostgreSQL, 1 replica", args.url, 1, readers=args.readers, write_slots=args.write_slots),
        Scenario(
            "PostgreSQL, 3 replicas, one SIGKILLed",
            args.url,
            3,
            kill=True,
            readers=args.readers,
            write_slots=args.write_slots,
        ),
    ]
    for scenario in scenarios:
        print(f"measuring: {scenario.name}", file=sys.stderr)
        asyncio.run(measure(scenario, args.runs))
    print(
        f"The example service under load: {args.runs} runs of 6 nodes x {SETTINGS['SERVICE_STEPS']} steps of "
        f"{SETTINGS['SERVICE_STEP_SECONDS']} s, {args.readers} readers, {args.write_slots} write slots; "
        f"{platform.node()}, {os.cpu_count()} cores\n"
    )
    print(
        "| scenario | runs/s | GET run p50 / p99 ms | summary p50 / p99 ms | node write p50 / p99 ms "
        "| commit to client p50 / p99 ms | kill to resume | PostgreSQL waits |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for scenario in scenarios:
        print(scenario.row())
    print("\nThe same deliveries from the run's updated_at (stamped before the write waited), p50 / p99 ms:")
    for scenario in scenarios:
        print(f"- {scenario.name}: {_pair(scenario.since_updated_at)}")
    ratio = scenarios[1].runs_per_second / scenarios[0].runs_per_second
    print(f"\nPostgreSQL 1 replica / in memory: {ratio:.2f}x runs/s (target >= 0.4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

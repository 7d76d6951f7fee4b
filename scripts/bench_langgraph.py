"""Our LangGraph checkpoint savers against LangGraph's own, on the same database in the same rounds.

    python scripts/bench_langgraph.py --url postgresql://127.0.0.1/bench   # vs langgraph-checkpoint-postgres
    python scripts/bench_langgraph.py --url sqlite:////tmp/bench.db        # vs langgraph-checkpoint-sqlite

Both pairs run: the sync savers (``WorkflowCheckpointSaver`` vs ``PostgresSaver`` /
``SqliteSaver``) and the async ones (``AsyncWorkflowCheckpointSaver`` vs
``AsyncPostgresSaver`` / ``AsyncSqliteSaver``). A thread is the checkpoints a
graph of three channels writes, step after step: ``messages`` (a list that
grows by one ~200-byte message a step), ``step`` (an int) and ``status`` (a
string); each step changes ``messages`` and ``step``. Timed, per call:
``put`` (one step's checkpoint), ``put_writes`` (a task's two writes),
``get_tuple`` (a thread's newest checkpoint and its writes) and ``list``
(a thread's 10 newest). The contenders take turns within every round;
reported: the median in microseconds and ours / theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from contextlib import AsyncExitStack, ExitStack
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    empty_checkpoint,
)

from workflow_db import connect, connect_async
from workflow_db.langgraph import AsyncWorkflowCheckpointSaver, WorkflowCheckpointSaver
from workflow_db.migrate import upgrade

OPERATIONS = ("put", "put_writes", "get_tuple", "list")


class Thread:
    """One saver's thread: the steps written so far, and the config of the newest."""

    def __init__(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.saver = saver
        self.checkpoint: Checkpoint = empty_checkpoint()
        self.config: RunnableConfig = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
        self.messages: list[dict[str, str]] = []

    def next_step(self) -> tuple[RunnableConfig, Checkpoint, CheckpointMetadata, ChannelVersions]:
        """The arguments of ``put`` for the next step."""
        step = len(self.messages)
        self.messages = [*self.messages, {"role": "ai", "content": f"step {step}: " + "x" * 180}]
        versions = dict(self.checkpoint["channel_versions"])
        next_version = self.saver.get_next_version
        new_versions = {
            channel: next_version(versions.get(channel), None) for channel in ("messages", "step")
        }
        if step == 0:
            new_versions["status"] = self.saver.get_next_version(None, None)
        versions.update(new_versions)
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": self.messages, "step": step, "status": "running"}
        checkpoint["channel_versions"] = versions
        self.checkpoint = checkpoint
        return self.config, checkpoint, {"source": "loop", "step": step, "parents": {}}, new_versions

    def stored(self, config: RunnableConfig) -> None:
        """``put`` returned ``config``: the next step's parent."""
        self.config = config

    def writes(self) -> tuple[RunnableConfig, list[tuple[str, Any]], str]:
        writes = [("messages", self.messages[-1:]), ("step", len(self.messages))]
        return self.config, writes, str(uuid.uuid4())


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def sync_round(threads: dict[str, Thread], samples: dict[str, dict[str, list[float]]], steps: int) -> None:
    """``steps`` steps of each contender, taking turns call by call."""
    for _ in range(steps):
        for name, thread in threads.items():
            saver, times = thread.saver, samples[name]
            started = time.perf_counter()
            config = saver.put(*thread.next_step())
            times["put"].append(time.perf_counter() - started)
            thread.stored(config)
            started = time.perf_counter()
            saver.put_writes(*thread.writes())
            times["put_writes"].append(time.perf_counter() - started)
            started = time.perf_counter()
            thread_id = config["configurable"]["thread_id"]
            saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
            times["get_tuple"].append(time.perf_counter() - started)
            started = time.perf_counter()
            list(saver.list({"configurable": {"thread_id": thread_id}}, limit=10))
            times["list"].append(time.perf_counter() - started)


Samples = dict[str, dict[str, list[float]]]
"""Per contender, per call: the seconds each call took."""


async def async_round(threads: dict[str, Thread], samples: Samples, steps: int) -> None:
    """The same as :func:`sync_round` through the async savers."""
    for _ in range(steps):
        for name, thread in threads.items():
            saver, times = thread.saver, samples[name]
            started = time.perf_counter()
            config = await saver.aput(*thread.next_step())
            times["put"].append(time.perf_counter() - started)
            thread.stored(config)
            started = time.perf_counter()
            await saver.aput_writes(*thread.writes())
            times["put_writes"].append(time.perf_counter() - started)
            thread_id = config["configurable"]["thread_id"]
            started = time.perf_counter()
            await saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
            times["get_tuple"].append(time.perf_counter() - started)
            started = time.perf_counter()
            [found async for found in saver.alist({"configurable": {"thread_id": thread_id}}, limit=10)]
            times["list"].append(time.perf_counter() - started)


def report(title: str, theirs: str, samples: dict[str, dict[str, list[float]]]) -> None:
    print(f"\n{title}\n")
    print(f"| call | workflow_db µs | {theirs} µs | ours / theirs |")
    print("|---|---|---|---|")
    for operation in OPERATIONS:
        ours, their = median_us(samples["ours"][operation]), median_us(samples["theirs"][operation])
        print(f"| {operation} | {ours:.0f} | {their:.0f} | {ours / their:.2f}x |")


def sync_savers(url: str, stack: ExitStack) -> tuple[str, dict[str, BaseCheckpointSaver[Any]]]:
    db = stack.enter_context(connect(url))
    ours = WorkflowCheckpointSaver(db)
    if url.startswith("sqlite"):
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        connection = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
        stack.callback(connection.close)
        theirs: BaseCheckpointSaver[Any] = SqliteSaver(connection)
        return "langgraph-checkpoint-sqlite", {"ours": ours, "theirs": theirs}
    from langgraph.checkpoint.postgres import PostgresSaver

    postgres = stack.enter_context(PostgresSaver.from_conn_string(url))
    postgres.setup()
    return "langgraph-checkpoint-postgres", {"ours": ours, "theirs": postgres}


async def async_savers(url: str, stack: AsyncExitStack) -> dict[str, BaseCheckpointSaver[Any]]:
    db = await stack.enter_async_context(await connect_async(url))
    ours = AsyncWorkflowCheckpointSaver(db)
    if url.startswith("sqlite"):
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        theirs: BaseCheckpointSaver[Any] = await stack.enter_async_context(
            AsyncSqliteSaver.from_conn_string(url.removeprefix("sqlite:///"))
        )
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        theirs = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(url))
    await theirs.setup()  # type: ignore[attr-defined]
    return {"ours": ours, "theirs": theirs}


def fresh_samples() -> dict[str, dict[str, list[float]]]:
    return {name: {operation: [] for operation in OPERATIONS} for name in ("ours", "theirs")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="a database both savers use (migrated here)")
    parser.add_argument("--threads", type=int, default=20, help="threads per contender (default 20)")
    parser.add_argument("--steps", type=int, default=25, help="checkpoints per thread (default 25)")
    options = parser.parse_args(argv)
    with connect(options.url) as db:
        upgrade(db)
        dialect = db.dialect
    print(
        f"bench_langgraph on {dialect}: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}; {options.threads} threads x "
        f"{options.steps} steps per contender"
    )
    with ExitStack() as stack:
        theirs_name, savers = sync_savers(options.url, stack)
        samples = fresh_samples()
        for _ in range(options.threads):
            sync_round({name: Thread(saver) for name, saver in savers.items()}, samples, options.steps)
        report("sync savers", theirs_name, samples)

    async def run_async() -> dict[str, dict[str, list[float]]]:
        async with AsyncExitStack() as stack:
            savers = await async_savers(options.url, stack)
            samples = fresh_samples()
            for _ in range(options.threads):
                threads = {name: Thread(saver) for name, saver in savers.items()}
                await async_round(threads, samples, options.steps)
            return samples

    report("async savers", theirs_name, asyncio.run(run_async()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The async store: tasks writing one run's nodes at once, each in its own transaction, and a watcher.

python -m workflow_db.migrate && python examples/asyncio_tasks.py    # $WORKFLOW_DB_URL, or ./workflow.db
"""

import asyncio

from workflow_db import AsyncWorkflowStore, WorkflowGraph, WorkflowNodeStatus, connect_async


async def completed_nodes(store: AsyncWorkflowStore, run_id: str, after: int, count: int) -> list[str]:
    """Watch the run's changes (from any process) until ``count`` nodes completed."""
    done: list[str] = []
    async for change in store.watch(after, run_id=run_id, timeout=30):
        state = change.node_state
        if state is not None and state.status is WorkflowNodeStatus.COMPLETED and state.node_id not in done:
            done.append(state.node_id)
            if len(done) == count:
                break
    return sorted(done)


async def main() -> None:
    async with connect_async() as db:  # a pool of connections (PostgreSQL) or worker threads (SQLite)
        store = AsyncWorkflowStore(db)
        await store.ensure_project("proj_a")
        nodes = [{"id": f"n{index}"} for index in range(4)]
        graph = await store.create_graph(WorkflowGraph("proj_a", "fan-out", {"nodes": nodes}))
        run = await store.create_run(graph.id)
        after = (await store.list_changes(run_id=run.id))[-1].seq  # watch what comes after this
        watcher = asyncio.create_task(completed_nodes(store, run.id, after, len(nodes)))

        async def work(node_id: str) -> None:
            async with store.transaction():  # this task's transaction: both writes or neither
                await store.set_node_state(run.id, node_id, status="running", progress=0.5)
                await store.append_node_message(run.id, node_id, "halfway")
            await store.set_node_state(run.id, node_id, status="completed", progress=1.0)

        await asyncio.gather(*(work(node["id"]) for node in nodes))
        print("watched:", await watcher)
        summary = await store.run_summary(run.id)
        assert summary is not None
        print("progress:", summary.progress, "messages:", [node.messages for node in summary.nodes])


asyncio.run(main())

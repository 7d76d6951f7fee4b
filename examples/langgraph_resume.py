"""A LangGraph graph resumes from the database after its process is killed, and waits for a human.

python -m workflow_db.migrate && python examples/langgraph_resume.py    # $WORKFLOW_DB_URL, or ./workflow.db

Replica 1 (a child process) claims a run and runs its graph with thread_id = the run id; it is
killed (SIGKILL) in the middle of "transform". Replica 2 claims the orphaned run once the lease
expired and resumes the graph from its last checkpoint: "fetch" does not run again. The graph
interrupts for approval (LangGraph's human-in-the-loop), which pauses the run; approving resumes it.
Needs: pip install "workflow_db[langgraph]" langgraph
"""

import asyncio
import subprocess
import sys
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from workflow_db import AsyncWorkflowStore, WorkflowGraph, WorkflowRun, connect_async
from workflow_db.langgraph import AsyncWorkflowCheckpointSaver

NODES = ("fetch", "transform", "approve", "publish")
LEASE_SECONDS = 1.0


class Report(TypedDict, total=False):
    text: str
    approved: bool


def build(store: AsyncWorkflowStore, run_id: str, owner: str, crash_in: str = "") -> CompiledStateGraph:  # type: ignore[type-arg]
    """The run's graph: each node records that it ran, on the run's node state, as it finishes."""

    async def done(node: str, update: Report) -> Report:
        await store.set_node_state(run_id, node, status="completed", progress=1.0)
        await store.append_node_message(run_id, node, f"done by {owner}")
        return update

    async def fetch(state: Report) -> Report:
        return await done("fetch", {"text": "quarterly numbers"})

    async def transform(state: Report) -> Report:
        if crash_in == "transform":
            print("in transform", flush=True)  # the parent kills this process now
            await asyncio.Event().wait()
        return await done("transform", {"text": state["text"].upper()})

    async def approve(state: Report) -> Report:
        answer = interrupt({"question": f"publish {state['text']!r}?"})  # ends this invocation until resumed
        return await done("approve", {"approved": answer == "yes"})

    async def publish(state: Report) -> Report:
        return await done("publish", {})

    graph = StateGraph(Report)
    for node in (fetch, transform, approve, publish):
        graph.add_node(node.__name__, node)
    for source, target in zip((START, *NODES), (*NODES, END), strict=True):
        graph.add_edge(source, target)
    return graph.compile(checkpointer=AsyncWorkflowCheckpointSaver(store.db))


async def invoke(app: CompiledStateGraph, graph_input: Any, run: WorkflowRun) -> Any:  # type: ignore[type-arg]
    """Run (or resume) the run's graph: thread_id is the run; lease_token fences its checkpoints to
    the lease; durability="sync" commits each step's checkpoint before the next step starts."""
    config: RunnableConfig = {"configurable": {"thread_id": run.id, "lease_token": run.lease_token}}
    return await app.ainvoke(graph_input, config, durability="sync")


async def replica_1(run_id: str) -> None:
    """Claim the run and start its graph (killed in "transform")."""
    async with connect_async() as db:
        store = AsyncWorkflowStore(db)
        run = await store.claim_run(run_id, "replica-1", lease_seconds=LEASE_SECONDS)
        assert run is not None
        await store.update_run_status(run_id, "running", lease_token=run.lease_token)
        await invoke(build(store, run_id, "replica-1", crash_in="transform"), {}, run)


async def claim_orphan(store: AsyncWorkflowStore, owner: str) -> WorkflowRun:
    """What a replica's resume loop does: claim runs whose holder is gone (its lease expired)."""
    while not (claimed := await store.claim_orphaned_runs(owner, lease_seconds=30)):
        await asyncio.sleep(LEASE_SECONDS / 4)
    return claimed[0]


async def main() -> None:
    async with connect_async() as db:
        store = AsyncWorkflowStore(db)
        await store.ensure_project("proj_a")
        graph = await store.create_graph(
            WorkflowGraph("proj_a", "report", {"nodes": [{"id": n} for n in NODES]})
        )
        run_id = (await store.create_run(graph.id)).id

        child = subprocess.Popen([sys.executable, __file__, run_id], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline() == "in transform\n"
        child.kill()  # SIGKILL: no cleanup, its lease stays until it expires
        child.wait()
        print("replica-1 killed in transform")

        run = await claim_orphan(store, "replica-2")
        app = build(store, run_id, "replica-2")
        result = await invoke(app, None, run)  # None: from the last checkpoint
        question = result["__interrupt__"][0].value
        paused = await store.pause_run(run_id, checkpoint=question, lease_token=run.lease_token)
        await store.release_run(run_id, "replica-2")
        assert paused is not None
        print(f"replica-2 resumed it; run {paused.status.value}, waiting for approval:", question["question"])

        # A human answers (say through the API): the replica that takes the request claims the run.
        held = await store.claim_run(run_id, "replica-3")
        assert held is not None
        await store.resume_run(run_id, lease_token=held.lease_token)
        app = build(store, run_id, "replica-3")
        await invoke(app, Command(resume="yes"), held)
        await store.update_run_status(run_id, "completed", lease_token=held.lease_token)

        summary = await store.run_summary(run_id)
        assert summary is not None
        print("run:", summary.run.status.value)
        for node in summary.nodes:
            print(f"{node.node_id}: {node.messages}")


if __name__ == "__main__":
    asyncio.run(replica_1(sys.argv[1]) if len(sys.argv) > 1 else main())

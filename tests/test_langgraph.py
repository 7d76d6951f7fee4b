"""workflow_db.langgraph: LangGraph's own conformance suite, the sync saver, the transaction join,
project scope and deletion with the run -- on both databases."""

from __future__ import annotations

import asyncio
import operator
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import pytest
from factories import make_graph, present
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.graph import END, START, StateGraph

import workflow_db.checkpoints
from workflow_db import (
    AsyncWorkflowStore,
    ConflictError,
    Database,
    IntegrityError,
    ValidationError,
    WorkflowStore,
    connect_async,
)
from workflow_db.langgraph import AsyncWorkflowCheckpointSaver, WorkflowCheckpointSaver


def test_langgraph_conformance_suite_passes_in_full(db_url: str) -> None:
    """Every capability LangGraph's suite knows is detected on the async saver, and passes."""

    @checkpointer_test(name="workflow_db")
    async def saver() -> AsyncIterator[AsyncWorkflowCheckpointSaver]:
        db = await connect_async(db_url)
        try:
            yield AsyncWorkflowCheckpointSaver(db)
        finally:
            await db.close()

    report = asyncio.run(validate(saver, progress=ProgressCallbacks.quiet()))
    failures = {name: result.failures for name, result in report.results.items() if not result.passed}
    assert failures == {}
    assert sorted(name for name, result in report.results.items() if result.detected) == [
        "copy_thread", "delete_for_runs", "delete_thread", "get_tuple", "list", "prune", "put", "put_writes",
    ]  # fmt: skip
    assert report.conformance_level() == "FULL"


# -- a real graph on the synchronous saver -------------------------------------------------


class Counting(TypedDict):
    visited: Annotated[list[str], operator.add]
    total: int


def counting_graph() -> StateGraph[Counting]:
    def step(name: str) -> Any:
        def node(state: Counting) -> dict[str, Any]:
            return {"visited": [name], "total": state["total"] + 1}

        return node

    graph = StateGraph(Counting)
    for name in ("a", "b", "c"):
        graph.add_node(name, step(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph


def thread(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def test_a_graph_runs_on_the_sync_saver_and_its_history_reads_back(db: Database) -> None:
    saver = WorkflowCheckpointSaver(db)
    graph = counting_graph().compile(checkpointer=saver)
    assert graph.invoke({"visited": [], "total": 0}, thread("t1")) == {"visited": ["a", "b", "c"], "total": 3}
    state = graph.get_state(thread("t1"))
    assert state.values == {"visited": ["a", "b", "c"], "total": 3}
    history = list(saver.list(thread("t1")))
    assert [found.metadata["step"] for found in history] == [3, 2, 1, 0, -1]
    assert [found.checkpoint["id"] for found in history] == sorted(
        (found.checkpoint["id"] for found in history), reverse=True
    )
    assert history[0].parent_config == history[1].config
    # filters, before and limit
    assert [found.metadata["step"] for found in saver.list(thread("t1"), filter={"source": "input"})] == [-1]
    assert [found.metadata["step"] for found in saver.list(None, before=history[1].config, limit=2)] == [1, 0]
    # an older checkpoint reads back with the values it had
    older = saver.get_tuple(history[2].config)
    assert older is not None
    assert older.checkpoint["channel_values"]["visited"] == ["a"]
    assert older.checkpoint["channel_values"]["total"] == 1


def test_list_pages_through_every_checkpoint_in_order(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow_db.checkpoints, "PAGE_SIZE", 3)
    saver = WorkflowCheckpointSaver(db)
    stored = []
    for thread_id in ("t1", "t2"):
        config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        for step in range(5):
            checkpoint = empty_checkpoint()
            config = saver.put(config, checkpoint, {"step": step}, {})
            stored.append(checkpoint["id"])
    everything = [found.checkpoint["id"] for found in saver.list(None)]
    assert everything == sorted(stored, reverse=True)
    assert [found.checkpoint["id"] for found in saver.list(None, limit=7)] == everything[:7]
    saver.put_writes(config, [], "task-without-writes")  # nothing to write: no statement, no error
    assert present(saver.get_tuple(config)).pending_writes == []
    assert len(list(saver.list(thread("t2")))) == 5


def test_copy_prune_and_delete_on_the_sync_saver(db: Database) -> None:
    saver = WorkflowCheckpointSaver(db)
    graph = counting_graph().compile(checkpointer=saver)
    langgraph_run = uuid.uuid4()
    graph.invoke({"visited": [], "total": 0}, thread("source") | {"metadata": {"run_id": str(langgraph_run)}})
    saver.copy_thread("source", "copy")
    assert graph.get_state(thread("copy")).values == {"visited": ["a", "b", "c"], "total": 3}
    saver.prune(["copy"])
    assert len(list(saver.list(thread("copy")))) == 1
    assert graph.get_state(thread("copy")).values == {"visited": ["a", "b", "c"], "total": 3}
    assert len(list(saver.list(thread("source")))) == 5
    saver.delete_thread("copy")
    assert list(saver.list(thread("copy"))) == []
    assert table_counts(db, "copy") == (0, 0, 0)
    assert {found.metadata["run_id"] for found in saver.list(thread("source"))} == {str(langgraph_run)}
    saver.delete_for_runs([str(langgraph_run)])
    assert list(saver.list(thread("source"))) == []


def test_bad_input_is_refused_before_anything_is_written(db: Database) -> None:
    saver = WorkflowCheckpointSaver(db)
    with pytest.raises(ValidationError, match="thread_id"):
        saver.put({"configurable": {}}, empty_checkpoint(), {}, {})
    with pytest.raises(ValidationError, match="strategy: 'newest' is not one of keep_latest, delete"):
        saver.prune(["t1"], strategy="newest")
    with pytest.raises(ValidationError, match="thread_ids: expected a sequence of ids"):
        saver.prune("t1")
    with pytest.raises(ValidationError, match="metadata: not JSON-serialisable"):
        saver.put(thread("t1") | {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}},
                  empty_checkpoint(), {"source": object()}, {})  # type: ignore[typeddict-item]  # fmt: skip
    assert list(saver.list(None)) == []


# -- one database: the runs and their checkpoints --------------------------------------------


def table_counts(db: Database, thread_id: str) -> tuple[int, int, int]:
    """How many checkpoints, blobs and writes ``thread_id`` has."""
    counts = [
        f"(SELECT count(*) FROM {table} WHERE thread_id = :thread_id)"
        for table in ("langgraph_checkpoints", "langgraph_blobs", "langgraph_writes")
    ]
    with db.reading() as session:
        checkpoints, blobs, writes = present(
            session.one(f"SELECT {', '.join(counts)}", {"thread_id": thread_id})
        )
    return checkpoints, blobs, writes


def checkpointed_run(store: WorkflowStore, saver: WorkflowCheckpointSaver, project_id: str = "p1") -> str:
    graph = make_graph(store, project_id)
    run = store.create_run(graph.id)
    counting_graph().compile(checkpointer=saver).invoke({"visited": [], "total": 0}, thread(run.id))
    config = next(iter(saver.list(thread(run.id)))).config
    saver.put_writes(config, [("visited", ["d"])], "task-1")
    return run.id


def test_a_checkpoint_written_in_a_store_transaction_commits_and_rolls_back_with_it(db: Database) -> None:
    store, saver = WorkflowStore(db), WorkflowCheckpointSaver(db)
    run = store.create_run(make_graph(store).id)
    config: RunnableConfig = {"configurable": {"thread_id": run.id, "checkpoint_ns": ""}}
    with pytest.raises(RuntimeError), store.transaction():
        store.set_node_state(run.id, "a", status="completed")
        saver.put(config, empty_checkpoint(), {"step": 0}, {})
        raise RuntimeError("the node failed after its checkpoint")
    assert saver.get_tuple(config) is None
    assert present(store.get_node_state(run.id, "a")).status.value == "pending"
    with store.transaction():
        store.set_node_state(run.id, "a", status="completed")
        saver.put(config, empty_checkpoint(), {"step": 0}, {})
    assert saver.get_tuple(config) is not None
    assert present(store.get_node_state(run.id, "a")).status.value == "completed"


def test_the_async_saver_joins_the_async_stores_transaction(db: Database, db_url: str) -> None:
    run = WorkflowStore(db).create_run(make_graph(WorkflowStore(db)).id)
    config: RunnableConfig = {"configurable": {"thread_id": run.id, "checkpoint_ns": ""}}

    async def check() -> None:
        async with await connect_async(db_url) as adb:
            store, saver = AsyncWorkflowStore(adb), AsyncWorkflowCheckpointSaver(adb)
            with pytest.raises(RuntimeError):
                async with store.transaction():
                    await store.set_node_state(run.id, "a", status="completed")
                    await saver.aput(config, empty_checkpoint(), {"step": 0}, {})
                    on_it: RunnableConfig = {"configurable": {**config["configurable"], "checkpoint_id": "x"}}
                    await saver.aput_writes(on_it, [("visited", ["a"])], "task-1")
                    raise RuntimeError("the node failed after its checkpoint")
            assert await saver.aget_tuple(config) is None
            async with store.transaction():
                await store.set_node_state(run.id, "a", status="completed")
                await saver.aput(config, empty_checkpoint(), {"step": 0}, {})
            assert await saver.aget_tuple(config) is not None

    asyncio.run(check())
    assert table_counts(db, run.id) == (1, 0, 0)
    assert present(WorkflowStore(db).get_node_state(run.id, "a")).status.value == "completed"


def test_a_runs_checkpoints_go_with_the_run(db: Database) -> None:
    store, saver = WorkflowStore(db), WorkflowCheckpointSaver(db)
    deleted, pruned, kept = (checkpointed_run(store, saver) for _ in range(3))
    assert all(part > 0 for part in table_counts(db, deleted))
    store.delete_graph(present(store.get_run(deleted)).workflow_id, cascade=True)
    assert table_counts(db, deleted) == (0, 0, 0)
    store.update_run_status(pruned, "completed")
    store.update_run_status(kept, "running")
    assert store.prune_runs(datetime.now(UTC) + timedelta(days=1)) == 1
    assert table_counts(db, pruned) == (0, 0, 0)
    assert all(part > 0 for part in table_counts(db, kept))
    # a thread that is not a run stays until it is deleted
    counting_graph().compile(checkpointer=saver).invoke({"visited": [], "total": 0}, thread("free"))
    assert all(part > 0 for part in table_counts(db, "free")[:2])


def test_a_saver_scoped_to_a_project_sees_and_writes_only_its_runs(
    store: WorkflowStore, db: Database
) -> None:
    unscoped = WorkflowCheckpointSaver(db)
    mine, theirs = checkpointed_run(store, unscoped, "p1"), checkpointed_run(store, unscoped, "p2")
    scoped = WorkflowCheckpointSaver(db, project_id="p1")
    assert scoped.get_tuple(thread(mine)) is not None
    assert scoped.get_tuple(thread(theirs)) is None
    assert {found.config["configurable"]["thread_id"] for found in scoped.list(None)} == {mine}
    config: RunnableConfig = {"configurable": {"thread_id": theirs, "checkpoint_ns": ""}}
    for thread_id in (theirs, "not-a-run"):
        with pytest.raises(IntegrityError, match=f"thread_id '{thread_id}': not a run of project 'p1'"):
            scoped.put(config | {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}},
                       empty_checkpoint(), {}, {})  # fmt: skip
    before = table_counts(db, theirs)
    with pytest.raises(IntegrityError):
        scoped.put_writes(next(iter(unscoped.list(thread(theirs)))).config, [("visited", ["x"])], "task-2")
    scoped.delete_thread(theirs)
    scoped.prune([theirs], strategy="delete")
    assert table_counts(db, theirs) == before
    with pytest.raises(IntegrityError):
        scoped.copy_thread(mine, theirs)
    scoped.copy_thread(theirs, mine)  # a thread it cannot see copies nothing
    assert table_counts(db, theirs) == before
    counting_graph().compile(checkpointer=scoped).invoke({"visited": [], "total": 0}, thread(mine))
    scoped.delete_thread(mine)
    assert table_counts(db, mine) == (0, 0, 0)


def test_importing_workflow_db_needs_no_langgraph_and_the_extra_is_named() -> None:
    script = """
import sys
sys.modules["langgraph"] = None
import workflow_db
try:
    import workflow_db.langgraph
except ImportError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert 'pip install "workflow_db[langgraph]"' in result.stdout


def test_a_write_fenced_by_a_lease_token_is_refused_once_the_run_changed_hands(db: Database) -> None:
    store, saver = WorkflowStore(db), WorkflowCheckpointSaver(db)
    run_id = store.create_run(make_graph(store).id).id
    first = present(present(store.claim_run(run_id, "replica-1")).lease_token)
    store.release_run(run_id, "replica-1")
    second = present(present(store.claim_run(run_id, "replica-2")).lease_token)
    config: RunnableConfig = {
        "configurable": {"thread_id": run_id, "checkpoint_ns": "", "lease_token": first}
    }
    with pytest.raises(ConflictError, match=f"lease {first} is no longer held"):
        saver.put(config, empty_checkpoint(), {}, {})
    with pytest.raises(ConflictError):
        saver.put_writes(config | {"configurable": {**config["configurable"], "checkpoint_id": "x"}},
                         [("visited", ["a"])], "task-1")  # fmt: skip
    assert table_counts(db, run_id) == (0, 0, 0)
    held = saver.put(config | {"configurable": {**config["configurable"], "lease_token": second}},
                     empty_checkpoint(), {}, {})  # fmt: skip
    assert saver.get_tuple(held) is not None
    with pytest.raises(ValidationError, match="lease_token: expected None or the lease_token"):
        saver.put(config | {"configurable": {**config["configurable"], "lease_token": "x"}},
                  empty_checkpoint(), {}, {})  # fmt: skip

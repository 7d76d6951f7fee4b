"""The run lifecycle: cancel, pause with a checkpoint, resume, run summary, on both databases."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import MakeStore
from factories import make_graph, present, run_threads

from workflow_db import (
    ConflictError,
    ValidationError,
    WorkflowGraph,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    WorkflowStore,
)


@pytest.fixture
def run_id(store: WorkflowStore) -> str:
    graph = make_graph(store, "p", "a", "b", "c", "d")
    return store.create_run(graph.id).id


def test_cancel_ends_the_run_and_its_unfinished_nodes(store: WorkflowStore, run_id: str) -> None:
    store.update_run_status(run_id, "running")
    store.set_node_state(run_id, "a", status="completed")
    store.set_node_state(run_id, "b", progress=0.5)  # RUNNING
    run = present(store.cancel_run(run_id, last_message="stopped by the user"))
    assert run.status is WorkflowRunStatus.CANCELLED and run.finished_at is not None
    assert run.last_message == "stopped by the user" and store.get_run(run_id) == run
    states = {s.node_id: s for s in store.list_node_states(run_id)}
    assert states["a"].status is WorkflowNodeStatus.COMPLETED  # finished nodes keep their status
    for node in ("b", "c", "d"):
        assert states[node].status is WorkflowNodeStatus.CANCELLED and states[node].completed_at is not None
    assert states["b"].progress == 0.5
    with pytest.raises(ConflictError, match=f"run '{run_id}' is cancelled: cancel_run needs a pending"):
        store.cancel_run(run_id)
    assert store.get_run(run_id) == run


@pytest.mark.parametrize("status", ["pending", "running", "paused"])
def test_every_unfinished_status_can_be_cancelled(store: WorkflowStore, run_id: str, status: str) -> None:
    store.update_run_status(run_id, status)
    assert present(store.cancel_run(run_id)).status is WorkflowRunStatus.CANCELLED


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_finished_run_is_not_cancelled(store: WorkflowStore, run_id: str, status: str) -> None:
    finished = present(store.update_run_status(run_id, status))
    before = store.list_node_states(run_id)
    with pytest.raises(ConflictError, match=f"is {status}"):
        store.cancel_run(run_id)
    assert store.get_run(run_id) == finished and store.list_node_states(run_id) == before


def test_pause_stores_a_checkpoint_and_resume_keeps_it(store: WorkflowStore, run_id: str) -> None:
    store.update_run_status(run_id, "running")
    checkpoint = {"next": "c", "done": ["a", "b"], "ratio": 0.5}
    paused = present(store.pause_run(run_id, checkpoint=checkpoint, last_message="paused"))
    assert paused.status is WorkflowRunStatus.PAUSED and paused.paused_at is not None
    assert paused.checkpoint == checkpoint and paused.finished_at is None
    with pytest.raises(ConflictError, match="is paused: pause_run needs a running run"):
        store.pause_run(run_id)
    resumed = present(store.resume_run(run_id))
    assert resumed.status is WorkflowRunStatus.RUNNING and resumed.paused_at is None
    assert resumed.checkpoint == checkpoint and resumed.last_message == "paused"
    with pytest.raises(ConflictError, match="is running: resume_run needs a paused run"):
        store.resume_run(run_id)
    again = present(store.pause_run(run_id))  # no checkpoint given: the stored one stays
    assert again.checkpoint == checkpoint


def test_leaving_pause_through_update_run_status_clears_paused_at(store: WorkflowStore, run_id: str) -> None:
    store.update_run_status(run_id, "running")
    store.pause_run(run_id, checkpoint=[1])
    run = present(store.update_run_status(run_id, "running"))
    assert run.paused_at is None and run.checkpoint == [1]


def test_pause_refuses_a_run_that_is_not_running(store: WorkflowStore, run_id: str) -> None:
    with pytest.raises(ConflictError, match="is pending: pause_run needs a running run"):
        store.pause_run(run_id, checkpoint={"x": 1})
    assert present(store.get_run(run_id)).checkpoint is None


@pytest.mark.parametrize("checkpoint", [{1, 2}, float("nan"), "x" * 2000])
def test_a_bad_checkpoint_is_refused_with_nothing_written(make_store: MakeStore, checkpoint: object) -> None:
    store = make_store(max_json_bytes=1000)
    run = store.create_run(make_graph(store, "p", "a").id, status="running")
    with pytest.raises(ValidationError, match="checkpoint"):
        store.pause_run(run.id, checkpoint=checkpoint)
    assert store.get_run(run.id) == run


def test_lifecycle_calls_on_an_unknown_run_or_another_project_change_nothing(
    store: WorkflowStore, run_id: str
) -> None:
    store.ensure_project("q")
    store.update_run_status(run_id, "running")
    before = (store.get_run(run_id), store.list_node_states(run_id))
    for call in (store.cancel_run, store.pause_run, store.resume_run, store.run_summary):
        assert call("no_such_run") is None
        assert call(run_id, project_id="q") is None
    assert (store.get_run(run_id), store.list_node_states(run_id)) == before
    assert present(store.pause_run(run_id, project_id="p")).status is WorkflowRunStatus.PAUSED


def test_run_summary_in_one_read(store: WorkflowStore, run_id: str) -> None:
    store.update_run_status(run_id, "running")
    store.set_node_state(run_id, "a", status="completed", progress=1.0)
    store.set_node_state(run_id, "c", progress=0.5)
    store.set_node_state(run_id, "b", progress=0.25)
    summary = present(store.run_summary(run_id, project_id="p"))
    assert summary.run == store.get_run(run_id)
    assert summary.nodes == store.list_node_states(run_id)
    assert summary.progress == (1.0 + 0.25 + 0.5 + 0.0) / 4
    assert summary.running == ["b", "c"]  # node order, not the order they started in
    assert dict(summary.counts) == {
        WorkflowNodeStatus.PENDING: 1,
        WorkflowNodeStatus.RUNNING: 2,
        WorkflowNodeStatus.COMPLETED: 1,
        WorkflowNodeStatus.FAILED: 0,
        WorkflowNodeStatus.SKIPPED: 0,
        WorkflowNodeStatus.CANCELLED: 0,
    }
    with pytest.raises(TypeError):
        summary.counts[WorkflowNodeStatus.FAILED] = 3  # type: ignore[index]


def test_run_summary_of_a_run_without_nodes(store: WorkflowStore) -> None:
    store.ensure_project("p")
    graph = store.create_graph(WorkflowGraph("p", "empty", {"nodes": []}))
    run = store.create_run(graph.id)
    summary = present(store.run_summary(run.id))
    assert (summary.nodes, summary.progress, summary.running) == ([], 0.0, [])
    assert set(summary.counts.values()) == {0} and summary.run == run


def test_cancel_racing_node_updates_leaves_no_node_running(store: WorkflowStore) -> None:
    """Writers keep moving nodes to RUNNING while the run is cancelled: none stays RUNNING after."""
    nodes = [f"n{index}" for index in range(12)]
    graph = make_graph(store, "p", *nodes)
    for race in range(20):
        run = store.create_run(graph.id, status="running", id=f"race-{race}")
        refused: list[str] = []

        def racer(index: int, run_id: str = run.id, refused: list[str] = refused) -> None:
            if index == 0:
                store.cancel_run(run_id)
                return
            for step in range(1, 6):
                try:
                    store.set_node_state(run_id, nodes[index - 1], status="running", progress=step / 10)
                except ConflictError:  # cancelled: the executor stops writing
                    refused.append(nodes[index - 1])
                    return

        assert run_threads(len(nodes) + 1, racer) == []
        assert present(store.get_run(run.id)).status is WorkflowRunStatus.CANCELLED
        statuses = {state.status for state in store.list_node_states(run.id)}
        assert statuses <= {WorkflowNodeStatus.CANCELLED}, statuses
    with pytest.raises(ConflictError, match="its node states are final"):
        store.append_node_message("race-0", "n0", "too late")


@pytest.mark.parametrize(
    "cancel",
    [lambda s, r: s.cancel_run(r), lambda s, r: s.update_run_status(r, "cancelled")],
    ids=["cancel_run", "update_run_status"],
)
def test_cancelling_by_any_path_ends_the_unfinished_nodes(
    store: WorkflowStore, run_id: str, cancel: object
) -> None:
    store.update_run_status(run_id, "running")
    store.set_node_state(run_id, "a", status="completed")
    store.set_node_state(run_id, "b", progress=0.5)  # RUNNING, as an executor left it
    cancel(store, run_id)  # type: ignore[operator]
    states = {s.node_id: s for s in store.list_node_states(run_id)}
    assert states["a"].status is WorkflowNodeStatus.COMPLETED
    for node in ("b", "c", "d"):
        assert states[node].status is WorkflowNodeStatus.CANCELLED and states[node].completed_at is not None
    assert present(store.get_run(run_id)).finished_at is not None


def test_a_node_write_that_changes_nothing_on_a_cancelled_run_returns_the_stored_state(
    store: WorkflowStore, run_id: str
) -> None:
    store.update_run_status(run_id, "running")
    store.set_node_state(run_id, "b", progress=0.5)
    store.update_run_status(run_id, "cancelled")  # the legacy service's way
    stored = present(store.get_node_state(run_id, "b"))
    before = store.run_summary(run_id)
    # The executor's wind-down, and retries: nothing changes, nothing raises, no timestamp moves.
    assert store.set_node_state(run_id, "b", status="cancelled") == stored
    assert store.set_node_state(run_id, "b", status="cancelled", progress=0.5) == stored
    assert store.set_node_state(run_id, "a", status="cancelled") == present(store.get_node_state(run_id, "a"))
    changes: list[Callable[[], object]] = [
        lambda: store.set_node_state(run_id, "b", status="completed"),
        lambda: store.set_node_state(run_id, "b", progress=0.9),
        lambda: store.set_node_state(run_id, "b", status="cancelled", error="late"),
        lambda: store.append_node_message(run_id, "b", "late"),
    ]
    for change in changes:
        with pytest.raises(ConflictError, match="is cancelled: its node states are final"):
            change()
    assert store.run_summary(run_id) == before

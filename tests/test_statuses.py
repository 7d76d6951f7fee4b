"""Statuses from the service's own enums (tests/legacy_service.py); 'idle' is PENDING."""

from __future__ import annotations

import pytest
from factories import make_graph, present
from legacy_service import WorkflowNodeStatus as ServiceNodeStatus
from legacy_service import WorkflowRunStatus as ServiceRunStatus

from workflow_db import ValidationError, WorkflowNodeStatus, WorkflowRunStatus, WorkflowStore


def test_every_run_status_argument_takes_the_services_enum(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a")
    run = store.create_run(graph.id, status=ServiceRunStatus.RUNNING)
    assert run.status is WorkflowRunStatus.RUNNING
    paused = present(
        store.update_run_status(run.id, ServiceRunStatus.PAUSED, expected_status=ServiceRunStatus.RUNNING)
    )
    assert paused.status is WorkflowRunStatus.PAUSED and paused.finished_at is None  # not terminal
    assert [r.id for r in store.list_runs(status=ServiceRunStatus.PAUSED)] == [run.id]
    assert store.count_runs(status=[ServiceRunStatus.PAUSED, ServiceRunStatus.RUNNING]) == 1
    assert store.count_runs(status="paused") == 1
    done = present(store.update_run_status(run.id, ServiceRunStatus.CANCELLED))
    assert done.status is WorkflowRunStatus.CANCELLED and done.finished_at is not None


def test_idle_is_pending_stored_and_returned_as_pending(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a", "b")
    run = store.create_run(graph.id)
    store.set_node_state(run.id, "a", status=ServiceNodeStatus.RUNNING, progress=0.5)
    state = store.set_node_state(run.id, "a", status=ServiceNodeStatus.IDLE)
    assert state.status is WorkflowNodeStatus.PENDING
    assert present(store.get_node_state(run.id, "a")).status is WorkflowNodeStatus.PENDING
    assert store.set_node_state(run.id, "b", status="idle").status is WorkflowNodeStatus.PENDING


def test_a_cancelled_node_is_terminal(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a")
    run = store.create_run(graph.id)
    store.set_node_state(run.id, "a", status=ServiceNodeStatus.RUNNING)
    state = store.set_node_state(run.id, "a", status=ServiceNodeStatus.CANCELLED)
    assert state.status is WorkflowNodeStatus.CANCELLED and state.completed_at is not None


@pytest.mark.parametrize("bad", ["idle", "exploded", 3, ServiceNodeStatus.IDLE])
def test_a_value_that_is_no_run_status_is_refused(store: WorkflowStore, bad: object) -> None:
    graph = make_graph(store, "p", "a")
    with pytest.raises(ValidationError, match=r"status: .* is not one of pending, running, paused"):
        store.create_run(graph.id, status=bad)  # type: ignore[arg-type]
    assert store.count_runs() == 0


def test_an_unknown_node_status_lists_the_allowed_values_and_the_alias(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a")
    run = store.create_run(graph.id)
    before = store.list_node_states(run.id)
    with pytest.raises(ValidationError) as refused:
        store.set_node_state(run.id, "a", status="sleeping")
    assert str(refused.value) == (
        "status: 'sleeping' is not one of pending, running, completed, failed, skipped, cancelled "
        "(idle = pending)"
    )
    assert store.list_node_states(run.id) == before

"""SPEC.md sections 5 and 8.2: node states, on both databases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import MakeStore
from factories import make_graph, present

from workflow_db import IntegrityError, ValidationError, WorkflowNodeStatus, WorkflowStore


@pytest.fixture
def run_id(store: WorkflowStore) -> str:
    graph = make_graph(store, "p", "a", "b", "c")
    return store.create_run(graph.id).id


def test_set_node_state_persists(store: WorkflowStore, run_id: str) -> None:
    state = store.set_node_state(run_id, "a", status=WorkflowNodeStatus.RUNNING, progress=0.5)
    assert state.status is WorkflowNodeStatus.RUNNING and state.progress == 0.5
    assert state.started_at is not None and state.completed_at is None
    assert store.get_node_state(run_id, "a") == state


def test_get_node_state_all_fields(store: WorkflowStore, run_id: str) -> None:
    store.set_node_state(run_id, "b", status="running", progress=0.25, messages=["m1"])
    state = store.set_node_state(run_id, "b", error="boom")
    fetched = store.get_node_state(run_id, "b")
    assert fetched == state
    assert (fetched.run_id, fetched.node_id, fetched.status) == (
        run_id,
        "b",
        WorkflowNodeStatus.FAILED,
    )
    assert (fetched.progress, fetched.messages, fetched.error) == (0.25, ["m1"], "boom")
    assert present(fetched.completed_at) >= present(fetched.started_at)
    assert store.get_node_state(run_id, "zzz") is None


def test_list_node_states_in_graph_order_then_others(store: WorkflowStore, run_id: str) -> None:
    store.set_node_state(run_id, "z-extra", progress=0.1)
    store.set_node_state(run_id, "m-extra", status="skipped")
    store.set_node_state(run_id, "c", progress=1.0)
    ids = [s.node_id for s in store.list_node_states(run_id)]
    assert ids == ["a", "b", "c", "m-extra", "z-extra"]
    assert store.list_node_states("no-such-run") == []


def test_progress_update_moves_pending_to_running(store: WorkflowStore, run_id: str) -> None:
    first = store.set_node_state(run_id, "a", progress=0.3)
    assert first.status is WorkflowNodeStatus.RUNNING and first.started_at is not None
    second = store.set_node_state(run_id, "a", progress=0.7)
    assert second.progress == 0.7 and second.status is WorkflowNodeStatus.RUNNING
    assert second.started_at == first.started_at
    assert present(store.get_node_state(run_id, "a")).progress == 0.7


def test_only_given_fields_change(store: WorkflowStore, run_id: str) -> None:
    store.set_node_state(run_id, "a", progress=0.4, messages=["x"], error="e1")
    state = store.set_node_state(run_id, "a", status="running")
    assert (state.progress, state.messages, state.error) == (0.4, ["x"], "e1")


def test_messages_stored_as_json(store: WorkflowStore, run_id: str) -> None:
    text = ["Step 1", "Step 2", 'quote " and \\ and %s and :name and ✓']
    state = store.set_node_state(run_id, "a", messages=text)
    assert state.messages == text and present(store.get_node_state(run_id, "a")).messages == text
    assert state.status is WorkflowNodeStatus.PENDING


def test_error_marks_failed(store: WorkflowStore, run_id: str) -> None:
    state = store.set_node_state(run_id, "a", error="Error message")
    assert state.error == "Error message" and state.status is WorkflowNodeStatus.FAILED
    assert state.completed_at is not None
    explicit = store.set_node_state(run_id, "b", status="running", error="warning only")
    assert explicit.status is WorkflowNodeStatus.RUNNING


def test_reentering_running_resets_timestamps(store: WorkflowStore, run_id: str) -> None:
    running = store.set_node_state(run_id, "a", status="running")
    done = store.set_node_state(run_id, "a", status="completed")
    assert done.completed_at is not None and done.started_at == running.started_at
    again = store.set_node_state(run_id, "a", status="completed")
    assert again.completed_at == done.completed_at  # entering, not staying, sets it
    retry = store.set_node_state(run_id, "a", status="running")
    assert present(retry.started_at) > present(running.started_at) and retry.completed_at is None


def test_append_node_message(store: WorkflowStore, run_id: str) -> None:
    store.set_node_state(run_id, "a", messages=["one"])
    state = store.append_node_message(run_id, "a", "two")
    assert state.messages == ["two"]  # the message appended: reading the list back would be O(n)
    store.append_node_message(run_id, "a", "three")
    assert present(store.get_node_state(run_id, "a")).messages == ["one", "two", "three"]
    fresh = store.append_node_message(run_id, "new-node", "first")
    assert fresh.status is WorkflowNodeStatus.PENDING and fresh.messages == ["first"]
    assert present(store.get_node_state(run_id, "new-node")).messages == ["first"]


def test_messages_given_replace_the_appended_ones_too(store: WorkflowStore, run_id: str) -> None:
    for line in ("a1", "a2"):
        store.append_node_message(run_id, "a", line)
    assert store.set_node_state(run_id, "a", messages=["fresh"]).messages == ["fresh"]
    assert present(store.get_node_state(run_id, "a")).messages == ["fresh"]
    store.append_node_message(run_id, "a", "after")
    assert store.set_node_state(run_id, "a", progress=0.5).messages == ["fresh", "after"]
    summary = present(store.run_summary(run_id))
    assert [node.messages for node in summary.nodes if node.node_id == "a"] == [["fresh", "after"]]
    assert [s.messages for s in store.list_node_states(run_id) if s.node_id == "a"] == [["fresh", "after"]]


def test_an_append_costs_the_same_at_any_count(store: WorkflowStore, run_id: str) -> None:
    """Each append writes one message row: the node state's own row stays the size it was."""
    store.append_node_message(run_id, "a", "first")
    with store.db.reading() as session:
        before = session.one("SELECT length(CAST(messages_json AS text)), appended FROM workflow_node_states "
                             "WHERE run_id = :r AND node_id = 'a'", {"r": run_id})  # fmt: skip
    for index in range(300):
        store.append_node_message(run_id, "a", f"line {index}")
    with store.db.reading() as session:
        after = session.one("SELECT length(CAST(messages_json AS text)), appended FROM workflow_node_states "
                            "WHERE run_id = :r AND node_id = 'a'", {"r": run_id})  # fmt: skip
        rows = session.one("SELECT count(*) FROM workflow_node_messages WHERE run_id = :r", {"r": run_id})
    assert before is not None and after is not None and rows is not None
    assert (before[0], after[0], after[1], rows[0]) == (before[0], before[0], 301, 301)
    assert present(store.get_node_state(run_id, "a")).messages == ["first"] + [
        f"line {i}" for i in range(300)
    ]


def test_append_node_message_respects_size_cap(make_store: MakeStore, run_id: str) -> None:
    small = make_store(max_json_bytes=64)
    small.append_node_message(run_id, "a", "x" * 40)
    run_before, last_change = small.get_run(run_id), small.list_changes()[-1].seq
    with pytest.raises(ValidationError, match="max_json_bytes"):
        small.append_node_message(run_id, "a", "y" * 30)
    assert present(small.get_node_state(run_id, "a")).messages == ["x" * 40]
    # Nothing written: not the run's heartbeat, not a change.
    assert small.get_run(run_id) == run_before and small.list_changes(last_change) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"progress": 1.5}, "progress"),
        ({"progress": -0.1}, "progress"),
        ({"progress": float("nan")}, "progress"),
        ({"progress": "half"}, "progress"),
        ({"status": "dancing"}, "pending, running, completed, failed, skipped"),
        ({"messages": "not a list"}, "messages"),
        ({"messages": ["ok", 3]}, "messages\\[1\\]"),
        ({"error": "nul\x00byte"}, "NUL"),
    ],
)
def test_bad_node_input_writes_nothing(
    store: WorkflowStore, run_id: str, kwargs: dict[str, Any], message: str
) -> None:
    before = store.list_node_states(run_id)
    with pytest.raises(ValidationError, match=message):
        store.set_node_state(run_id, "a", **kwargs)
    assert store.list_node_states(run_id) == before


def test_node_state_of_unknown_run_is_integrity_error(store: WorkflowStore) -> None:
    with pytest.raises(IntegrityError, match="run_id"):
        store.set_node_state("no-run", "a", progress=0.5)
    with pytest.raises(IntegrityError, match="run_id"):
        store.append_node_message("no-run", "a", "hello")
    assert store.get_node_state("no-run", "a") is None


def test_many_node_state_updates(store: WorkflowStore, run_id: str) -> None:
    for step in range(1, 1001):
        store.set_node_state(run_id, "b", progress=step / 1000)
    state = present(store.get_node_state(run_id, "b"))
    assert state.progress == 1.0 and state.status is WorkflowNodeStatus.RUNNING


def test_node_writes_are_heartbeats_of_their_run(store: WorkflowStore, run_id: str) -> None:
    running = present(store.update_run_status(run_id, "running"))
    cutoff = running.updated_at + timedelta(microseconds=1)
    assert [r.id for r in store.list_runs(status="running", updated_before=cutoff)] == [run_id]
    state = store.set_node_state(run_id, "a", progress=0.2)
    after_set = present(store.get_run(run_id)).updated_at
    assert after_set > running.updated_at and state.started_at == after_set
    assert store.list_runs(status="running", updated_before=cutoff) == []
    store.append_node_message(run_id, "b", "still going")
    after_append = present(store.get_run(run_id)).updated_at
    assert after_append > after_set
    assert store.list_runs(status="running", updated_before=after_append) == []
    assert store.count_runs(status="running", updated_before=after_append + timedelta(microseconds=1)) == 1


def test_a_rolled_back_node_write_leaves_the_run_untouched(store: WorkflowStore, run_id: str) -> None:
    before = present(store.get_run(run_id))
    with pytest.raises(RuntimeError), store.transaction():
        store.set_node_state(run_id, "a", progress=0.4)
        raise RuntimeError("undo")
    assert store.get_run(run_id) == before


def test_a_listed_node_appends_as_cheaply_as_a_new_one(store: WorkflowStore) -> None:
    """Schema 9: a list set_node_state wrote is kept as rows too, so that an append never rewrites
    it (SQLite rewrites a whole row on every update). Read back whole, in order, on both databases."""
    run = store.create_run(make_graph(store, "p", "listed", "short").id)
    listed = [f"message {index}" for index in range(2000)]
    assert store.set_node_state(run.id, "listed", messages=listed).messages == listed
    store.set_node_state(run.id, "short", messages=["one"])
    for index in range(3):
        assert store.append_node_message(run.id, "listed", f"after {index}").messages == [f"after {index}"]
    assert present(store.get_node_state(run.id, "listed")).messages == [
        *listed,
        "after 0",
        "after 1",
        "after 2",
    ]
    assert store.set_node_state(run.id, "listed", messages=["replaced"]).messages == ["replaced"]
    store.append_node_message(run.id, "listed", "then")
    assert present(store.get_node_state(run.id, "listed")).messages == ["replaced", "then"]
    assert store.set_node_state(run.id, "listed", messages=[]).messages == []
    assert present(store.get_node_state(run.id, "listed")).messages == []
    if store.db.dialect == "sqlite":  # the row itself stays small: the list lives in its rows
        with store.db.reading() as session:
            assert session.one(
                "SELECT messages_json, appended FROM workflow_node_states WHERE node_id = 'short'"
            ) == ("[]", 1)

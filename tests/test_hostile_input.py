"""Hostile text in every text field and JSON key round-trips unchanged, on both databases."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from factories import present
from hypothesis import given
from hypothesis import strategies as st
from test_model import hostile_text, json_values

from workflow_db import ValidationError, WorkflowGraph, WorkflowStore

_ids = itertools.count()
identifiers = hostile_text.filter(bool)


@given(
    project=identifiers,
    name=hostile_text,
    description=hostile_text,
    node=identifiers,
    extra_key=hostile_text,
    extra=json_values,
    run_input=json_values,
    message=hostile_text,
    messages=st.lists(hostile_text, max_size=3),
    error=hostile_text,
)
def test_text_round_trips_unchanged(
    store: WorkflowStore,
    project: str,
    name: str,
    description: str,
    node: str,
    extra_key: str,
    extra: object,
    run_input: object,
    message: str,
    messages: list[str],
    error: str,
) -> None:
    suffix = f"-{next(_ids)}"  # one database for all examples: keep ids apart
    project_id = project + suffix
    assert store.ensure_project(project_id, name).name == name
    structure = {"nodes": [{"id": node, extra_key: extra}], extra_key: [extra]}
    graph = store.create_graph(WorkflowGraph(project_id, name, structure, description=description))
    assert store.get_graph(graph.id) == graph and graph.graph == structure
    assert (graph.name, graph.description) == (name, description)
    run = store.create_run(graph.id, run_input, id=node + suffix)
    assert present(store.get_run(run.id)).input == run_input
    assert (
        present(store.update_run_status(run.id, last_message=message, output={extra_key: extra})).last_message
        == message
    )
    state = store.set_node_state(run.id, node, messages=messages, error=error)
    assert (state.messages, state.error) == (messages, error)
    assert store.append_node_message(run.id, node, message).messages == [*messages, message]
    assert [s.node_id for s in store.list_node_states(run.id)] == [node]
    assert store.list_runs(project_id=project_id) == [store.get_run(run.id)]


@pytest.mark.parametrize(
    "call",
    [
        lambda s, g, r: s.ensure_project("nul\x00project"),
        lambda s, g, r: s.create_graph(WorkflowGraph("p", "nul\x00name", {"nodes": []})),
        lambda s, g, r: s.create_graph(WorkflowGraph("p", "n", {"nodes": [], "k\x00": 1})),
        lambda s, g, r: s.update_graph(g, description="a\x00b"),
        lambda s, g, r: s.create_run(g, {"text": "a\x00b"}),
        lambda s, g, r: s.update_run_status(r, last_message="\x00"),
        lambda s, g, r: s.update_run_status(r, output=["\x00"]),
        lambda s, g, r: s.set_node_state(r, "a", error="e\x00"),
        lambda s, g, r: s.set_node_state(r, "a", messages=["\x00"]),
        lambda s, g, r: s.set_node_state(r, "a\x00", progress=0.1),
        lambda s, g, r: s.append_node_message(r, "a", "m\x00"),
    ],
)
def test_nul_is_a_validation_error_everywhere(
    store: WorkflowStore, call: Callable[[WorkflowStore, str, str], object]
) -> None:
    store.ensure_project("p")
    graph = store.create_graph(WorkflowGraph("p", "g", {"nodes": [{"id": "a"}]}))
    run = store.create_run(graph.id)
    before = (store.get_graph(graph.id), store.get_run(run.id), store.list_node_states(run.id))
    with pytest.raises(ValidationError, match="NUL"):
        call(store, graph.id, run.id)
    assert (store.get_graph(graph.id), store.get_run(run.id), store.list_node_states(run.id)) == before
    assert store.get_project("p") is not None


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_project("a\x00"),
        lambda s: s.get_graph(b"graph-id"),
        lambda s: s.get_run(42),
        lambda s: s.list_runs(project_id="p\x00"),
        lambda s: s.count_runs(workflow_id=7),
        lambda s: s.list_node_states(None),
        lambda s: s.get_node_state("r", "n\x00"),
        lambda s: s.delete_graph("g\x00"),
        lambda s: s.update_run_status(3.5, "running"),
    ],
)
def test_lookups_with_impossible_ids_are_validation_errors(
    store: WorkflowStore, call: Callable[[WorkflowStore], object]
) -> None:
    """Not a driver error on one database and None on the other: the same clear error on both."""
    with pytest.raises(ValidationError, match=r"expected a string id|NUL"):
        call(store)

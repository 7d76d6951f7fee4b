"""API.md "Project scope": every by-id call scoped to another project acts as if the id were unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from factories import make_graph, present

from workflow_db import GraphInUseError, IntegrityError, ValidationError, WorkflowStore


@pytest.fixture
def scoped(store: WorkflowStore) -> tuple[WorkflowStore, str, str]:
    """A graph and a run in proj_a; proj_b exists too. Returns (store, graph id, run id)."""
    graph = make_graph(store, "proj_a", "a", "b")
    run = store.create_run(graph.id, {"x": 1}, id="run_a")
    store.ensure_project("proj_b")
    return store, graph.id, run.id


# Each by-id call, as (name, call(store, graph_id, run_id, project_id)).
READS_AND_UPDATES: list[tuple[str, Callable[[WorkflowStore, str, str, str], Any]]] = [
    ("get_graph", lambda s, g, r, p: s.get_graph(g, project_id=p)),
    ("get_graph version", lambda s, g, r, p: s.get_graph(g, version=1, project_id=p)),
    ("update_graph", lambda s, g, r, p: s.update_graph(g, name="renamed", project_id=p)),
    ("delete_graph", lambda s, g, r, p: s.delete_graph(g, project_id=p)),
    ("delete_graph cascade", lambda s, g, r, p: s.delete_graph(g, cascade=True, project_id=p)),
    ("get_run", lambda s, g, r, p: s.get_run(r, project_id=p)),
    ("update_run_status", lambda s, g, r, p: s.update_run_status(r, "running", project_id=p)),
    (
        "update_run_status expected",
        lambda s, g, r, p: s.update_run_status(r, "running", expected_status="pending", project_id=p),
    ),
    ("get_node_state", lambda s, g, r, p: s.get_node_state(r, "a", project_id=p)),
    ("list_node_states", lambda s, g, r, p: s.list_node_states(r, project_id=p)),
]

NODE_WRITES: list[tuple[str, Callable[[WorkflowStore, str, str], Any]]] = [
    ("set_node_state", lambda s, r, p: s.set_node_state(r, "a", progress=0.5, project_id=p)),
    ("set_node_state new node", lambda s, r, p: s.set_node_state(r, "zz", status="running", project_id=p)),
    ("append_node_message", lambda s, r, p: s.append_node_message(r, "a", "hello", project_id=p)),
]


def snapshot(store: WorkflowStore, graph_id: str, run_id: str) -> tuple[Any, ...]:
    return (
        store.get_graph(graph_id),
        store.get_run(run_id),
        store.list_node_states(run_id),
        store.list_graphs(),
        store.list_runs(),
    )


@pytest.mark.parametrize(("name", "call"), READS_AND_UPDATES, ids=[n for n, _ in READS_AND_UPDATES])
def test_an_object_of_another_project_is_absent(
    scoped: tuple[WorkflowStore, str, str], name: str, call: Callable[[WorkflowStore, str, str, str], Any]
) -> None:
    store, graph_id, run_id = scoped
    before = snapshot(store, graph_id, run_id)
    other = call(store, graph_id, run_id, "proj_b")
    unknown = call(store, "no_such_graph", "no_such_run", "proj_b")
    assert other == unknown and other in (None, False, [])
    assert snapshot(store, graph_id, run_id) == before  # nothing changed
    try:  # in its own project the call finds the object
        found = call(store, graph_id, run_id, "proj_a")
    except GraphInUseError:  # delete_graph without cascade: found it, and it has a run
        found = "in use"
    assert found not in (None, False, [])


@pytest.mark.parametrize(("name", "call"), NODE_WRITES, ids=[n for n, _ in NODE_WRITES])
def test_node_writes_to_a_run_of_another_project_fail_like_an_unknown_run(
    scoped: tuple[WorkflowStore, str, str], name: str, call: Callable[[WorkflowStore, str, str], Any]
) -> None:
    store, graph_id, run_id = scoped
    before = snapshot(store, graph_id, run_id)
    with pytest.raises(IntegrityError) as other:
        call(store, run_id, "proj_b")
    with pytest.raises(IntegrityError) as unknown:
        call(store, "no_such_run", "proj_b")
    assert str(other.value) == str(unknown.value).replace("no_such_run", run_id)
    assert "proj_a" not in str(other.value)
    assert snapshot(store, graph_id, run_id) == before
    assert call(store, run_id, "proj_a").run_id == run_id


def test_after_an_item_of_another_project_is_refused_like_an_unknown_one(
    scoped: tuple[WorkflowStore, str, str],
) -> None:
    store, graph_id, run_id = scoped
    graph_b = make_graph(store, "proj_b", "x")
    run_b = store.create_run(graph_b.id, id="run_b")
    run_a = present(store.get_run(run_id))
    graph_a = present(store.get_graph(graph_id))
    for after in (run_a, run_id):
        with pytest.raises(ValidationError) as other:
            store.list_runs(project_id="proj_b", after=after)
        with pytest.raises(ValidationError) as unknown:
            store.list_runs(project_id="proj_b", after="no_such_run")
        assert str(other.value) == str(unknown.value).replace("no_such_run", run_id)
    for after_graph in (graph_a, graph_id):
        with pytest.raises(ValidationError, match="after: no WorkflowGraph"):
            store.list_graphs(project_id="proj_b", after=after_graph)
    # Its own project's items page as before.
    assert store.list_runs(project_id="proj_b", after=run_b) == []
    assert store.list_runs(project_id="proj_a", after=run_id) == []
    assert [g.id for g in store.list_graphs(project_id="proj_b", after=graph_b.id)] == []


def test_scoped_reads_return_what_unscoped_ones_do_inside_the_project(
    scoped: tuple[WorkflowStore, str, str],
) -> None:
    store, graph_id, run_id = scoped
    assert store.get_graph(graph_id, project_id="proj_a") == store.get_graph(graph_id)
    assert store.get_run(run_id, project_id="proj_a") == store.get_run(run_id)
    assert store.list_node_states(run_id, project_id="proj_a") == store.list_node_states(run_id)
    assert store.get_node_state(run_id, "b", project_id="proj_a") == store.get_node_state(run_id, "b")
    state = store.append_node_message(run_id, "b", "m", project_id="proj_a")
    assert state.messages == ["m"]
    run = present(store.update_run_status(run_id, "completed", project_id="proj_a"))
    assert run.finished_at is not None
    assert store.delete_graph(graph_id, cascade=True, project_id="proj_a") is True
    assert store.get_run(run_id) is None

"""SPEC.md section 2: graph operations, on both databases."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime

import pytest
from conftest import MakeStore
from factories import graph_structure, make_graph, present

from workflow_db import (
    ConflictError,
    GraphInUseError,
    IntegrityError,
    ValidationError,
    WorkflowGraph,
    WorkflowStore,
)


def test_create_graph_persists_and_round_trips_json(store: WorkflowStore) -> None:
    store.ensure_project("proj_a")
    structure = graph_structure("a", "b", layout={"x": [1, 2.5, None]}, label="ünïcode ✓")
    created = store.create_graph(WorkflowGraph("proj_a", "etl", structure, description="d"))
    assert created.id and created.version == 1
    assert created.created_at == created.updated_at
    assert present(created.created_at).tzinfo is UTC
    fetched = store.get_graph(created.id)
    assert fetched == created
    assert fetched.graph == structure
    assert (fetched.project_id, fetched.name, fetched.description) == ("proj_a", "etl", "d")


def test_create_graph_ignores_caller_version_and_timestamps(store: WorkflowStore) -> None:
    store.ensure_project("p")
    old = datetime(2000, 1, 1, tzinfo=UTC)
    created = store.create_graph(
        WorkflowGraph("p", "g", graph_structure("a"), id="g1", version=7, created_at=old, updated_at=old)
    )
    assert created.id == "g1" and created.version == 1 and present(created.created_at) > old


def test_list_graphs_filters_by_project(store: WorkflowStore) -> None:
    a1 = make_graph(store, "proj_a")
    a2 = make_graph(store, "proj_a")
    make_graph(store, "proj_b")
    listed = store.list_graphs(project_id="proj_a")
    assert [g.id for g in listed] == [a2.id, a1.id]
    assert len(store.list_graphs()) == 3


def test_list_graphs_pages_with_after(store: WorkflowStore) -> None:
    ids = [make_graph(store, "p").id for _ in range(5)]
    first = store.list_graphs("p", limit=2)
    second = store.list_graphs("p", limit=2, after=first[-1])
    third = store.list_graphs("p", limit=2, after=second[-1].id)
    assert [g.id for g in first + second + third] == ids[::-1]
    with pytest.raises(ValidationError, match="after"):
        store.list_graphs("p", after="no-such-graph")


def test_get_graph_absent_is_none(store: WorkflowStore) -> None:
    assert store.get_graph("missing") is None
    assert store.get_graph("missing", version=1) is None


def test_update_graph_persists_and_bumps_version(store: WorkflowStore) -> None:
    graph = make_graph(store)
    new_structure = graph_structure("x", "y")
    updated = store.update_graph(graph.id, {"name": "renamed"}, graph=new_structure)
    assert updated is not None
    assert updated.version == 2 and updated.name == "renamed" and updated.graph == new_structure
    assert present(updated.updated_at) > present(graph.updated_at) and updated.created_at == graph.created_at
    assert store.get_graph(graph.id) == updated
    old = store.get_graph(graph.id, version=1)
    assert old is not None and old.graph == graph.graph and old.name == graph.name
    assert old.updated_at == graph.updated_at


def test_update_graph_without_change_keeps_version(store: WorkflowStore) -> None:
    graph = make_graph(store)
    same = store.update_graph(graph.id, name=graph.name, graph=graph.graph)
    assert same == graph


def test_update_graph_updated_at_grows_strictly(store: WorkflowStore) -> None:
    graph = make_graph(store)
    stamps = [present(graph.updated_at)]
    for index in range(20):
        updated = present(store.update_graph(graph.id, description=f"d{index}"))
        stamps.append(present(updated.updated_at))
    assert all(a < b for a, b in itertools.pairwise(stamps))


def test_update_graph_expected_version(store: WorkflowStore) -> None:
    graph = make_graph(store)
    assert present(store.update_graph(graph.id, name="v2", expected_version=1)).version == 2
    with pytest.raises(ConflictError, match="version 2"):
        store.update_graph(graph.id, name="v3", expected_version=1)
    assert present(store.get_graph(graph.id)).name == "v2"


def test_update_graph_absent_and_bad_keys(store: WorkflowStore) -> None:
    assert store.update_graph("missing", name="x") is None
    graph = make_graph(store)
    with pytest.raises(ValidationError, match="colour"):
        store.update_graph(graph.id, colour="red")
    with pytest.raises(ValidationError, match="graph"):
        store.update_graph(graph.id, graph={"nodes": "nope"})
    assert store.get_graph(graph.id) == graph


def test_delete_graph_removes_it(store: WorkflowStore) -> None:
    graph = make_graph(store)
    assert store.delete_graph(graph.id) is True
    assert store.get_graph(graph.id) is None
    assert store.get_graph(graph.id, version=1) is None
    assert store.delete_graph(graph.id) is False


def test_delete_graph_with_runs_is_refused_unless_cascade(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    with pytest.raises(GraphInUseError, match="1 run"):
        store.delete_graph(graph.id)
    with pytest.raises(ValidationError, match="cascade: expected True or False"):
        store.delete_graph(graph.id, cascade="yes")  # type: ignore[arg-type]
    assert store.get_run(run.id) is not None
    assert store.delete_graph(graph.id, cascade=True) is True
    assert store.get_run(run.id) is None
    assert store.list_node_states(run.id) == []


def test_graph_of_unknown_project_is_integrity_error(store: WorkflowStore) -> None:
    with pytest.raises(IntegrityError, match="project_id"):
        store.create_graph(WorkflowGraph("nope", "g", graph_structure("a")))
    assert store.list_graphs() == []


def test_duplicate_graph_id_is_integrity_error(store: WorkflowStore) -> None:
    store.ensure_project("p")
    store.create_graph(WorkflowGraph("p", "g", graph_structure("a"), id="same"))
    with pytest.raises(IntegrityError, match="already exists"):
        store.create_graph(WorkflowGraph("p", "other", graph_structure("b"), id="same"))
    assert present(store.get_graph("same")).name == "g"


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"edges": []}, "nodes"),
        ({"nodes": [{"name": "no id"}]}, "nodes\\[0\\]"),
        ({"nodes": [{"id": "a"}, {"id": "a"}]}, "more than once"),
        ({"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "z"}]}, "target"),
        ({"nodes": [{"id": "a"}], "weight": math.nan}, "JSON"),
        ({"nodes": [{"id": "a"}], "when": object()}, "JSON-serialisable"),
        ({"nodes": [{"id": "a\x00"}]}, "NUL"),
    ],
)
def test_invalid_graph_json_is_refused(store: WorkflowStore, graph: object, message: str) -> None:
    store.ensure_project("p")
    with pytest.raises(ValidationError, match=message):
        store.create_graph(WorkflowGraph("p", "bad", graph))
    assert store.list_graphs() == []


def test_graph_given_as_json_text_is_parsed(store: WorkflowStore) -> None:
    store.ensure_project("p")
    text = json.dumps(graph_structure("a", "b"))
    created = store.create_graph(WorkflowGraph("p", "g", text))
    assert created.graph == json.loads(text)


def test_graph_over_size_cap_names_field_and_sizes(make_store: MakeStore) -> None:
    small = make_store(max_json_bytes=1000)
    small.ensure_project("p")
    big = graph_structure("a", blob="x" * 2000)
    with pytest.raises(ValidationError, match=r"graph: \d+ bytes .* max_json_bytes is 1000"):
        small.create_graph(WorkflowGraph("p", "big", big))
    assert small.list_graphs() == []


def test_large_graph_round_trips(store: WorkflowStore) -> None:
    store.ensure_project("p")
    node_ids = [f"node-{index:04d}" for index in range(500)]
    structure = graph_structure(*node_ids, payload="é" * 2_000_000)
    created = store.create_graph(WorkflowGraph("p", "large", structure))
    assert present(store.get_graph(created.id)).graph == structure
    run = store.create_run(created.id)
    assert [s.node_id for s in store.list_node_states(run.id)] == node_ids


def test_projects(store: WorkflowStore) -> None:
    assert store.get_project("p") is None
    created = store.ensure_project("p", "First name")
    again = store.ensure_project("p", "Second name")
    assert created == again == store.get_project("p")
    assert again.name == "First name"
    assert store.ensure_project("q").name == "q"
    with pytest.raises(ValidationError, match="project_id"):
        store.ensure_project("")

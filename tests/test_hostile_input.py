"""Hostile text in every text field and JSON key round-trips unchanged, on both databases."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from factories import present
from hypothesis import given
from hypothesis import strategies as st
from test_model import hostile_text, json_values

from workflow_db import ValidationError, WorkflowGraph, WorkflowStore
from workflow_db.models import MAX_ID_LENGTH, MAX_JSON_DEPTH

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
    assert store.append_node_message(run.id, node, message).messages == [message]
    assert present(store.get_node_state(run.id, node)).messages == [*messages, message]
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


def _nested(depth: int) -> object:
    value: object = "leaf"
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return {"deep": value}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 995, 5000])
@pytest.mark.parametrize(
    "call",
    [
        lambda s, g, r, v: s.create_graph(WorkflowGraph("p", "n", {"nodes": [{"id": "a", "x": v}]})),
        lambda s, g, r, v: s.update_graph(g, graph={"nodes": [{"id": "a"}], "x": v}),
        lambda s, g, r, v: s.create_run(g, v),
        lambda s, g, r, v: s.update_run_status(r, output=v),
    ],
)
def test_json_nested_too_deep_is_refused_with_the_documented_limit(
    store: WorkflowStore, call: Callable[[WorkflowStore, str, str, object], object], depth: int
) -> None:
    store.ensure_project("p")
    graph = store.create_graph(WorkflowGraph("p", "g", {"nodes": [{"id": "a"}]}))
    run = store.create_run(graph.id)
    before = (store.list_graphs(), store.list_runs())
    value = _nested(depth)
    with pytest.raises(ValidationError, match=f"nested more than {MAX_JSON_DEPTH} levels deep"):
        call(store, graph.id, run.id, value)
    assert (store.list_graphs(), store.list_runs()) == before


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
def test_deep_graph_json_text_is_refused(store: WorkflowStore, depth: int) -> None:
    store.ensure_project("p")
    text = '{"nodes": [], "x": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(ValidationError, match=f"graph: nested more than {MAX_JSON_DEPTH}"):
        store.create_graph(WorkflowGraph("p", "n", text))
    assert store.list_graphs() == []


def test_json_at_the_depth_limit_round_trips(store: WorkflowStore) -> None:
    store.ensure_project("p")
    value = _nested(MAX_JSON_DEPTH)
    in_graph = _nested(MAX_JSON_DEPTH - 3)  # inside {"nodes": [{"x": ...}]}: three levels more
    graph = store.create_graph(WorkflowGraph("p", "n", {"nodes": [{"id": "a", "x": in_graph}]}))
    run = store.create_run(graph.id, value)
    assert present(store.get_run(run.id)).input == value
    assert present(store.get_graph(graph.id)).graph["nodes"][0]["x"] == in_graph


LONE_SURROGATE = "run-\udc80"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_run(LONE_SURROGATE),
        lambda s: s.get_graph(LONE_SURROGATE),
        lambda s: s.update_run_status(LONE_SURROGATE, "running"),
        lambda s: s.set_node_state(LONE_SURROGATE, "a", progress=0.5),
        lambda s: s.set_node_state("r", LONE_SURROGATE, progress=0.5),
        lambda s: s.list_runs(project_id=LONE_SURROGATE),
        lambda s: s.delete_graph(LONE_SURROGATE),
        lambda s: s.get_node_state("r", LONE_SURROGATE),
        lambda s: s.list_runs(after=LONE_SURROGATE),
        lambda s: s.list_graphs(after=LONE_SURROGATE),
        lambda s: s.get_run("r", project_id=LONE_SURROGATE),
    ],
)
def test_a_lone_surrogate_in_an_id_is_a_validation_error(
    store: WorkflowStore, call: Callable[[WorkflowStore], object]
) -> None:
    with pytest.raises(ValidationError, match="not valid Unicode"):
        call(store)


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("limit", lambda s, g: s.list_runs(limit=2**63)),
        ("limit", lambda s, g: s.list_graphs(limit=2**64)),
        ("batch_size", lambda s, g: s.prune_runs(datetime.now(UTC), batch_size=2**63)),
        ("version", lambda s, g: s.get_graph(g, version=2**31)),
        ("version", lambda s, g: s.get_graph(g, version=2**63)),
        (
            "updated_before",
            lambda s, g: s.list_runs(
                updated_before=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))
            ),
        ),
        (
            "finished_before",
            lambda s, g: s.prune_runs(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))),
        ),
    ],
)
def test_numbers_and_times_out_of_the_databases_range_are_validation_errors(
    store: WorkflowStore, field: str, call: Callable[[WorkflowStore, str], object]
) -> None:
    store.ensure_project("p")
    graph = store.create_graph(WorkflowGraph("p", "g", {"nodes": [{"id": "a"}]}))
    with pytest.raises(ValidationError, match=f"^{field}: .*(from 1 to|out of range)"):
        call(store, graph.id)


def test_ids_up_to_the_documented_length_round_trip_and_longer_ones_are_refused(store: WorkflowStore) -> None:
    longest = "😀" * MAX_ID_LENGTH  # four UTF-8 bytes a character: the widest index entries
    store.ensure_project(longest)
    graph = store.create_graph(WorkflowGraph(longest, "g", {"nodes": [{"id": longest}]}, id=longest))
    run = store.create_run(graph.id, id=longest)
    assert store.set_node_state(run.id, longest, progress=0.5).node_id == longest
    assert present(store.get_node_state(longest, longest, project_id=longest)).progress == 0.5
    too_long = "x" * (MAX_ID_LENGTH + 1)
    for call in (
        lambda: store.ensure_project(too_long),
        lambda: store.create_graph(WorkflowGraph("p", "g", {"nodes": []}, id=too_long)),
        lambda: store.create_run(graph.id, id=too_long),
        lambda: store.set_node_state(run.id, too_long, progress=0.1),
        lambda: store.get_run(too_long),
        lambda: store.get_run("x" * 10_000),
    ):
        with pytest.raises(ValidationError, match=f"at most {MAX_ID_LENGTH}"):
            call()
    assert store.count_runs() == 1 and len(store.list_node_states(run.id)) == 1


def _same_json(read: object, written: object) -> bool:
    """Equal, of the same types (a float stays a float, -0.0 keeps its sign), keys in the same order."""
    if type(read) is not type(written):
        return False
    if isinstance(written, float):
        return repr(read) == repr(written)
    if isinstance(written, dict):
        assert isinstance(read, dict)
        return list(read) == list(written) and all(_same_json(read[k], written[k]) for k in written)
    if isinstance(written, list):
        assert isinstance(read, list)
        return len(read) == len(written) and all(map(_same_json, read, written))
    return read == written


numbers = (
    st.integers()
    | st.integers(-(2**200), 2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e16, 1e300, -0.0, 0.0, 1.5e-300, 2**63, -(2**63) - 1, 10**30, 1.0, 123456789.125])
)
faithful_json = st.recursive(
    st.none() | st.booleans() | numbers | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=5),
    max_leaves=12,
)


@given(value=faithful_json, extra=faithful_json)
def test_json_reads_back_equal_of_the_same_types_and_key_order(
    store: WorkflowStore, value: object, extra: object
) -> None:
    project = f"p{next(_ids)}"
    store.ensure_project(project)
    structure = {"nodes": [{"id": "a", "z": extra, "a": value}], "edges": [], "meta": value}
    graph = store.create_graph(WorkflowGraph(project, "g", structure))
    run = store.create_run(graph.id, value)
    store.update_run_status(run.id, output={"b": extra, "a": value})
    assert _same_json(present(store.get_graph(graph.id)).graph, structure)
    stored = present(store.get_run(run.id))
    assert _same_json(stored.input, value)
    assert _same_json(stored.output, {"b": extra, "a": value})


@pytest.mark.parametrize(
    ("structure", "place"),
    [
        ({"nodes": [{"id": "a"}, {"id": "x" * 10_000}]}, "graph.nodes[1].id"),
        ({"nodes": [{"id": "a\x00b"}]}, "graph.nodes[0].id"),
        ({"nodes": [{"id": "\ud800"}]}, "graph.nodes[0].id"),
    ],
)
def test_node_ids_inside_a_graph_are_limited_like_every_id(
    store: WorkflowStore, structure: dict[str, object], place: str
) -> None:
    store.ensure_project("p")
    graph = store.create_graph(WorkflowGraph("p", "g", {"nodes": [{"id": "a"}]}))
    with pytest.raises(ValidationError, match=rf"^{re.escape(place)}: "):
        store.create_graph(WorkflowGraph("p", "g2", structure))
    with pytest.raises(ValidationError, match=rf"^{re.escape(place)}: "):
        store.update_graph(graph.id, graph=structure)
    assert [g.id for g in store.list_graphs("p")] == [graph.id] and store.get_graph(graph.id) == graph


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("progress", lambda s, r: s.set_node_state(r, "a", progress=10**400)),
        ("progress", lambda s, r: s.set_node_state(r, "a", progress=-(10**400))),
        ("limit", lambda s, r: s.list_runs(limit=1e300)),
        ("limit", lambda s, r: s.list_changes(limit=10**400)),
        ("after", lambda s, r: s.list_changes(after=10**400)),
        ("lease_seconds", lambda s, r: s.claim_run(r, "w", lease_seconds=10**400)),
        ("lease_token", lambda s, r: s.set_node_state(r, "a", progress=0.1, lease_token=10**400)),
        ("batch_size", lambda s, r: s.prune_runs(datetime.now(UTC), batch_size=10**400)),
    ],
)
def test_numbers_of_any_size_are_validation_errors_naming_the_argument(
    store: WorkflowStore, field: str, call: Callable[[WorkflowStore, str], object]
) -> None:
    store.ensure_project("p")
    run = store.create_run(store.create_graph(WorkflowGraph("p", "g", {"nodes": [{"id": "a"}]})).id)
    before = store.list_node_states(run.id)
    with pytest.raises(ValidationError, match=rf"^{field}: "):
        call(store, run.id)
    assert store.list_node_states(run.id) == before

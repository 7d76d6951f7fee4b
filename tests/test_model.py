"""Model-based test: random operation sequences on the store and on a plain reference model.

A hypothesis RuleBasedStateMachine applies the same random operations to the
store and to :class:`Model` -- API.md's semantics in a few dictionaries -- and
compares every observable result after each step, on both databases. The
``ci`` profile (CI=true) runs 200 sequences per database, the ``dev`` one 25.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from factories import empty_database
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from workflow_db import (
    ConflictError,
    GraphInUseError,
    IntegrityError,
    WorkflowGraph,
    WorkflowNodeState,
    WorkflowRun,
    WorkflowStore,
)

RUN_STATUSES = ["pending", "running", "completed", "failed", "cancelled"]
NODE_STATUSES = ["pending", "running", "completed", "failed", "skipped"]
TERMINAL_RUN = {"completed", "failed", "cancelled"}
TERMINAL_NODE = {"completed", "failed", "skipped"}
PROJECTS = ["p1", "p2", "p3"]
NODE_IDS = ["a", "b", "c", "d"]

hostile_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
) | st.sampled_from(["'", '"', "%s", "%(x)s", ":name", "?", ";--", "\\", "😀", "DROP TABLE projects;"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=6,
)


class Rollback(Exception):
    """Raised inside a transaction to abandon it."""


@dataclass
class ModelGraph:
    project_id: str
    name: str
    nodes: list[str]
    version: int = 1
    history: dict[int, tuple[str, list[str]]] = field(default_factory=dict)


@dataclass
class ModelRun:
    project_id: str
    workflow_id: str
    workflow_version: int
    status: str
    input: Any
    output: Any = None
    last_message: str | None = None
    finished_at: datetime | None = None
    nodes: list[str] = field(default_factory=list)


@dataclass
class ModelState:
    status: str = "pending"
    progress: float = 0.0
    messages: list[str] = field(default_factory=list)
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


def structure(nodes: list[str]) -> dict[str, Any]:
    return {"nodes": [{"id": node} for node in nodes]}


class Model:
    """API.md's semantics over plain dictionaries (timestamps are taken from the store's answers)."""

    def __init__(self) -> None:
        self.projects: set[str] = set()
        self.graphs: dict[str, ModelGraph] = {}
        self.runs: dict[str, ModelRun] = {}
        self.states: dict[tuple[str, str], ModelState] = {}

    def runs_of(self, graph_id: str) -> list[str]:
        return [run_id for run_id, run in self.runs.items() if run.workflow_id == graph_id]

    def delete_run(self, run_id: str) -> None:
        del self.runs[run_id]
        for key in [key for key in self.states if key[0] == run_id]:
            del self.states[key]

    def node_order(self, run_id: str) -> list[str]:
        in_graph = self.runs[run_id].nodes
        others = sorted(node for (run, node) in self.states if run == run_id and node not in in_graph)
        return [node for node in in_graph if (run_id, node) in self.states] + others


def make_machine(store: WorkflowStore) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``store`` (emptied at the start of every sequence)."""

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            empty_database(store.db)
            self.model = Model()

        @initialize(
            nodes=st.lists(st.sampled_from(NODE_IDS), unique=True, min_size=1, max_size=4),
            status=st.sampled_from(RUN_STATUSES),
        )
        def a_project_with_a_graph_and_a_run(self, nodes: list[str], status: str) -> None:
            """Every sequence starts from some data, so that short ones reach runs and node states."""
            self.ensure_project("p1")
            self.create_graph("p1", "first", nodes)
            graph_id = next(iter(self.model.graphs))
            run = store.create_run(graph_id, {"start": True}, status=status)
            self.model.runs[run.id] = ModelRun(
                "p1", graph_id, 1, status, {"start": True}, finished_at=run.finished_at, nodes=list(nodes)
            )
            for node in nodes:
                self.model.states[(run.id, node)] = ModelState()

        # -- projects and graphs ------------------------------------------------------

        @rule(project=st.sampled_from(PROJECTS))
        def ensure_project(self, project: str) -> None:
            assert store.ensure_project(project).id == project
            self.model.projects.add(project)

        @rule(
            project=st.sampled_from(PROJECTS),
            name=hostile_text,
            nodes=st.lists(st.sampled_from(NODE_IDS), unique=True, max_size=4),
        )
        def create_graph(self, project: str, name: str, nodes: list[str]) -> None:
            if project not in self.model.projects:
                with pytest.raises(IntegrityError):
                    store.create_graph(WorkflowGraph(project, name, structure(nodes)))
                return
            graph = store.create_graph(WorkflowGraph(project, name, structure(nodes)))
            assert graph.version == 1 and graph.graph == structure(nodes)
            self.model.graphs[graph.id] = ModelGraph(project, name, nodes, history={1: (name, nodes)})

        @precondition(lambda self: self.model.graphs)
        @rule(
            data=st.data(),
            name=st.none() | hostile_text,
            nodes=st.none() | st.lists(st.sampled_from(NODE_IDS), unique=True, max_size=4),
            expected=st.none() | st.integers(1, 4),
        )
        def update_graph(
            self, data: st.DataObject, name: str | None, nodes: list[str] | None, expected: int | None
        ) -> None:
            graph_id = data.draw(st.sampled_from(sorted(self.model.graphs)))
            graph = self.model.graphs[graph_id]
            graph_structure = None if nodes is None else structure(nodes)
            if expected is not None and expected != graph.version:
                with pytest.raises(ConflictError):
                    store.update_graph(graph_id, name=name, graph=graph_structure, expected_version=expected)
                return
            updated = store.update_graph(
                graph_id, name=name, graph=graph_structure, expected_version=expected
            )
            assert updated is not None
            changed = (name is not None and name != graph.name) or (
                nodes is not None and nodes != graph.nodes
            )
            if changed:
                graph.version += 1
                graph.name = graph.name if name is None else name
                graph.nodes = graph.nodes if nodes is None else nodes
                graph.history[graph.version] = (graph.name, graph.nodes)
            assert (updated.version, updated.name, updated.graph) == (
                graph.version,
                graph.name,
                structure(graph.nodes),
            )

        @precondition(lambda self: self.model.graphs)
        @rule(data=st.data(), cascade=st.booleans())
        def delete_graph(self, data: st.DataObject, cascade: bool) -> None:
            graph_id = data.draw(st.sampled_from(sorted(self.model.graphs)))
            if self.model.runs_of(graph_id) and not cascade:
                with pytest.raises(GraphInUseError):
                    store.delete_graph(graph_id)
                return
            assert store.delete_graph(graph_id, cascade=cascade) is True
            for run_id in self.model.runs_of(graph_id):
                self.model.delete_run(run_id)
            del self.model.graphs[graph_id]
            assert store.delete_graph(graph_id) is False

        # -- runs --------------------------------------------------------------------------

        @rule(
            data=st.data(),
            status=st.sampled_from(RUN_STATUSES),
            run_input=json_values,
            with_project=st.booleans(),
        )
        def create_run(self, data: st.DataObject, status: str, run_input: Any, with_project: bool) -> None:
            graph_id = data.draw(st.sampled_from([*sorted(self.model.graphs), "missing-graph"]))
            project = data.draw(st.sampled_from(PROJECTS)) if with_project else None
            if graph_id not in self.model.graphs:
                with pytest.raises(IntegrityError):
                    store.create_run(graph_id, run_input, status=status)
                return
            graph = self.model.graphs[graph_id]
            if project is not None and project != graph.project_id:
                with pytest.raises(IntegrityError, match="workflow_id: no graph"):
                    store.create_run(graph_id, run_input, status=status, project_id=project)
                return
            run = store.create_run(graph_id, run_input, status=status, project_id=project)
            assert (run.finished_at is not None) == (status in TERMINAL_RUN)
            self.model.runs[run.id] = ModelRun(
                graph.project_id,
                graph_id,
                graph.version,
                status,
                run_input,
                finished_at=run.finished_at,
                nodes=list(graph.nodes),
            )
            for node in graph.nodes:
                self.model.states[(run.id, node)] = ModelState()

        @precondition(lambda self: self.model.runs)
        @rule(
            data=st.data(),
            status=st.none() | st.sampled_from(RUN_STATUSES),
            finished=st.booleans(),
            message=st.none() | hostile_text,
            output=st.none() | json_values,
            expected=st.none() | st.sampled_from(RUN_STATUSES),
        )
        def update_run_status(
            self,
            data: st.DataObject,
            status: str | None,
            finished: bool,
            message: str | None,
            output: Any,
            expected: str | None,
        ) -> None:
            run_id = data.draw(st.sampled_from(sorted(self.model.runs)))
            self.apply_update_run_status(run_id, status, finished, message, output, expected)

        def apply_update_run_status(
            self,
            run_id: str,
            status: str | None,
            finished: bool,
            message: str | None,
            output: Any,
            expected: str | None,
        ) -> None:
            run = self.model.runs[run_id]
            kwargs = {
                "finished": finished,
                "last_message": message,
                "output": output,
                "expected_status": expected,
            }
            if expected is not None and expected != run.status:
                with pytest.raises(ConflictError):
                    store.update_run_status(run_id, status, **kwargs)
                return
            result = store.update_run_status(run_id, status, **kwargs)
            assert result is not None
            finish = finished or status in TERMINAL_RUN
            if finish:
                if run.finished_at is None:
                    run.finished_at = result.finished_at
                    assert run.finished_at is not None
            elif status is not None and run.status in TERMINAL_RUN:
                run.finished_at = None
            run.status = status or run.status
            run.last_message = run.last_message if message is None else message
            run.output = run.output if output is None else output
            self.check_run(run_id, result)
            if status == "cancelled":  # whatever the path, a cancel ends the unfinished nodes
                stored = {s.node_id: s for s in store.list_node_states(run_id)}
                for (owner, node), state in self.model.states.items():
                    if owner == run_id and state.status in ("pending", "running"):
                        state.status = "cancelled"
                        state.completed_at = stored[node].completed_at
                        assert state.completed_at is not None

        @rule(
            future=st.booleans(),
            project=st.none() | st.sampled_from(PROJECTS),
            batch_size=st.integers(1, 3),
        )
        def prune_runs(self, future: bool, project: str | None, batch_size: int) -> None:
            cutoff = datetime.now(UTC) + (timedelta(days=1) if future else -timedelta(days=1))
            doomed = [
                run_id
                for run_id, run in self.model.runs.items()
                if run.status in TERMINAL_RUN
                and run.finished_at is not None
                and run.finished_at < cutoff
                and project in (None, run.project_id)
            ]
            assert store.prune_runs(cutoff, project_id=project, batch_size=batch_size) == len(doomed)
            for run_id in doomed:
                self.model.delete_run(run_id)

        @rule(status=st.sampled_from(RUN_STATUSES))
        def update_missing_run(self, status: str) -> None:
            assert store.update_run_status("missing-run", status) is None

        # -- node states ----------------------------------------------------------------------

        @precondition(lambda self: self.model.runs)
        @rule(
            data=st.data(),
            node=st.sampled_from([*NODE_IDS, "extra"]),
            status=st.none() | st.sampled_from(NODE_STATUSES),
            progress=st.none() | st.floats(0, 1),
            messages=st.none() | st.lists(hostile_text, max_size=3),
            error=st.none() | hostile_text,
        )
        def set_node_state(
            self,
            data: st.DataObject,
            node: str,
            status: str | None,
            progress: float | None,
            messages: list[str] | None,
            error: str | None,
        ) -> None:
            run_id = data.draw(st.sampled_from(sorted(self.model.runs)))
            self.apply_set_node_state(run_id, node, status, progress, messages, error)

        def apply_set_node_state(
            self,
            run_id: str,
            node: str,
            status: str | None,
            progress: float | None,
            messages: list[str] | None,
            error: str | None,
        ) -> None:
            if self.model.runs[run_id].status == "cancelled":  # a cancelled run's node states are final
                stored = self.model.states.get((run_id, node))
                forced = status or ("failed" if error is not None else None)
                unchanged = stored is not None and (
                    not (forced is None and progress is not None and stored.status == "pending")
                    and forced in (None, stored.status)
                    and progress in (None, stored.progress)
                    and messages in (None, stored.messages)
                    and error in (None, stored.error)
                )
                if not unchanged:
                    with pytest.raises(ConflictError, match="is cancelled"):
                        store.set_node_state(
                            run_id, node, status=status, progress=progress, messages=messages, error=error
                        )
                    return
                # A write that changes nothing (a retry, a wind-down): the stored state, untouched.
                result = store.set_node_state(
                    run_id, node, status=status, progress=progress, messages=messages, error=error
                )
                self.check_state((run_id, node), result)
                return
            result = store.set_node_state(
                run_id, node, status=status, progress=progress, messages=messages, error=error
            )
            key = (run_id, node)
            existing = key in self.model.states
            state = self.model.states.setdefault(key, ModelState())
            old = state.status if existing else None
            forced = status or ("failed" if error is not None else None)
            if existing:
                promoted = "running" if progress is not None and old == "pending" else old
                new = forced or promoted
            else:
                new = forced or ("running" if progress is not None else "pending")
            if new == "running" and old != "running":
                assert result.started_at is not None and result.completed_at is None
                state.started_at, state.completed_at = result.started_at, None
            elif new in TERMINAL_NODE and new != old:
                assert result.completed_at is not None
                state.completed_at = result.completed_at
            assert new is not None
            state.status = new
            state.progress = state.progress if progress is None else progress
            state.messages = state.messages if messages is None else list(messages)
            state.error = state.error if error is None else error
            self.check_state(key, result)

        @precondition(lambda self: self.model.runs)
        @rule(data=st.data(), node=st.sampled_from([*NODE_IDS, "extra"]), message=hostile_text)
        def append_node_message(self, data: st.DataObject, node: str, message: str) -> None:
            run_id = data.draw(st.sampled_from(sorted(self.model.runs)))
            if self.model.runs[run_id].status == "cancelled":
                with pytest.raises(ConflictError, match="is cancelled"):
                    store.append_node_message(run_id, node, message)
                return
            result = store.append_node_message(run_id, node, message)
            state = self.model.states.setdefault((run_id, node), ModelState())
            state.messages = [*state.messages, message]
            assert result.messages == [message]  # the appended one alone; the invariant reads the list
            self.check_state((run_id, node), replace(result, messages=state.messages))

        @rule(node=st.sampled_from(NODE_IDS))
        def node_state_of_missing_run(self, node: str) -> None:
            with pytest.raises(IntegrityError):
                store.set_node_state("missing-run", node, progress=0.5)

        # -- transactions that roll back ----------------------------------------------------

        @precondition(lambda self: self.model.runs)
        @rule(data=st.data(), status=st.sampled_from(RUN_STATUSES), node=st.sampled_from(NODE_IDS))
        def rolled_back_transaction(self, data: st.DataObject, status: str, node: str) -> None:
            run_id = data.draw(st.sampled_from(sorted(self.model.runs)))
            # Cancelled, the node write inside refuses (ConflictError): rolled back all the same.
            with pytest.raises(ConflictError if status == "cancelled" else Rollback), store.transaction():
                store.update_run_status(run_id, status, last_message="never seen")
                store.set_node_state(run_id, node, error="never seen")
                store.append_node_message(run_id, node, "never seen")
                if self.model.graphs:
                    graph_id = sorted(self.model.graphs)[0]
                    store.update_graph(graph_id, name="never seen")
                    store.create_run(graph_id)
                raise Rollback

        @precondition(lambda self: self.model.runs)
        @rule(data=st.data(), status=st.sampled_from(RUN_STATUSES), progress=st.floats(0, 1))
        def committed_transaction(self, data: st.DataObject, status: str, progress: float) -> None:
            run_id = data.draw(st.sampled_from(sorted(self.model.runs)))
            if status == "cancelled":  # its node write refuses, and takes the status change with it
                with pytest.raises(ConflictError), store.transaction():
                    store.update_run_status(run_id, status, last_message="in a transaction")
                    store.append_node_message(run_id, "a", "late")  # an append always changes the state
                return
            with store.transaction():
                self.apply_update_run_status(run_id, status, False, "in a transaction", None, None)
                self.apply_set_node_state(run_id, "a", None, progress, None, None)

        # -- comparisons ----------------------------------------------------------------------

        def check_run(self, run_id: str, seen: WorkflowRun) -> None:
            run = self.model.runs[run_id]
            assert (seen.project_id, seen.workflow_id, seen.workflow_version) == (
                run.project_id,
                run.workflow_id,
                run.workflow_version,
            )
            assert (seen.status.value, seen.input, seen.output, seen.last_message, seen.finished_at) == (
                run.status,
                run.input,
                run.output,
                run.last_message,
                run.finished_at,
            )

        def check_state(self, key: tuple[str, str], seen: WorkflowNodeState) -> None:
            state = self.model.states[key]
            assert (seen.status.value, seen.progress, seen.messages, seen.error) == (
                state.status,
                state.progress,
                state.messages,
                state.error,
            )
            assert (seen.started_at, seen.completed_at) == (state.started_at, state.completed_at)

        @invariant()
        def everything_matches(self) -> None:
            graphs = store.list_graphs()
            assert sorted(g.id for g in graphs) == sorted(self.model.graphs)
            for graph in graphs:
                expected = self.model.graphs[graph.id]
                assert (graph.project_id, graph.name, graph.version, graph.graph) == (
                    expected.project_id,
                    expected.name,
                    expected.version,
                    structure(expected.nodes),
                )
                for version, (name, nodes) in expected.history.items():
                    old = store.get_graph(graph.id, version=version)
                    assert old is not None and (old.name, old.graph) == (name, structure(nodes))
            runs = store.list_runs()
            assert sorted(r.id for r in runs) == sorted(self.model.runs)
            paged: list[WorkflowRun] = []
            while page := store.list_runs(limit=2, after=paged[-1] if paged else None):
                paged += page
            assert paged == runs  # keyset pages visit every run once, in order
            assert [(r.started_at, r.id) for r in runs] == sorted(
                ((r.started_at, r.id) for r in runs), reverse=True
            )
            for run in runs:
                self.check_run(run.id, run)
                states = store.list_node_states(run.id)
                assert [s.node_id for s in states] == self.model.node_order(run.id)
                for state in states:
                    self.check_state((run.id, state.node_id), state)
            for project in PROJECTS:
                assert store.count_runs(project_id=project) == sum(
                    1 for r in self.model.runs.values() if r.project_id == project
                )

    return StoreMachine


def test_store_matches_the_reference_model(store: WorkflowStore) -> None:
    run_state_machine_as_test(make_machine(store))

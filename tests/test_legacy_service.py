"""The legacy service (tests/legacy_service.py) against the store: same calls, same data, both databases.

* A differential test: hypothesis applies one random sequence of the
  service's calls to the in-memory service and to the same calls on the store
  (:class:`StoreBackedService`, what the service's methods become) and
  compares what both hold after every step.
* The service's populated dictionaries, imported directly and through a
  snapshot file written with README.md's recipe, read back field for field.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import legacy_service as legacy
import pytest
from factories import empty_database, present
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from workflow_db import ConflictError, IntegrityError, WorkflowNodeState, WorkflowRun, WorkflowStore
from workflow_db.importer import import_memory, main
from workflow_db.models import TERMINAL_RUN_STATUSES

PROJECT = "proj_a"
GRAPH_ID = "default_retrieval_graph"
NODE_IDS = [node.id for node in legacy.default_graph().nodes]


class StoreBackedService:
    """The service's calls on the store, as the service would write them after the move."""

    def __init__(self, store: WorkflowStore, project_id: str) -> None:
        self.store = store
        self.project_id = project_id

    def create_run(self, workflow_id: str) -> WorkflowRun | None:
        run_id = f"run_{self.store.count_runs(project_id=self.project_id) + 1}"
        try:
            return self.store.create_run(
                workflow_id, id=run_id, project_id=self.project_id, last_message="Run created (pending)."
            )
        except IntegrityError:  # unknown workflow: the service returned None
            return None

    def update_run_status(
        self, run_id: str, status: Any, last_message: str | None = None, finished: bool | None = None
    ) -> WorkflowRun | None:
        return self.store.update_run_status(
            run_id, status, last_message=last_message, finished=finished, project_id=self.project_id
        )

    def set_node_state(self, run_id: str, node_id: str, *, status: Any, progress: float) -> Any:
        try:
            return self.store.set_node_state(
                run_id, node_id, status=status, progress=progress, project_id=self.project_id
            )
        except IntegrityError:  # unknown run: the service returned None
            return None

    def get_node_state(self, run_id: str, node_id: str) -> WorkflowNodeState | None:
        return self.store.get_node_state(run_id, node_id, project_id=self.project_id)

    def list_node_states(self, run_id: str) -> list[WorkflowNodeState]:
        return self.store.list_node_states(run_id, project_id=self.project_id)


def node_view(state: Any) -> tuple[str, str, float]:
    """What both hold of a node state: id, status (``idle`` is ``pending``), progress."""
    status = state.status.value
    return (state.node_id, "pending" if status == "idle" else status, state.progress)


def assert_same(service: legacy.WorkflowService, swapped: StoreBackedService) -> None:
    store = swapped.store
    assert store.count_runs(project_id=PROJECT) == len(service.list_runs())
    for old in service.list_runs():
        new = present(store.get_run(old.id, project_id=PROJECT))
        assert (new.status.value, new.last_message, new.workflow_id) == (
            old.status.value,
            old.last_message,
            old.workflow_id,
        )
        if old.finished_at is not None and new.status in TERMINAL_RUN_STATUSES:
            # (The store clears finished_at when a run leaves a terminal status; the service kept it.)
            assert new.finished_at is not None
        assert [node_view(s) for s in swapped.list_node_states(old.id)] == [
            node_view(s) for s in service.list_node_states(old.id)
        ]


def make_machine(store: WorkflowStore) -> type[RuleBasedStateMachine]:
    class Differential(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            empty_database(store.db)
            self.service = legacy.WorkflowService()
            self.swapped = StoreBackedService(store, PROJECT)
            import_memory(store, graphs=self.service._graphs, default_project_id=PROJECT)

        def run_id(self, data: st.DataObject) -> str:
            return data.draw(st.sampled_from([*self.service._runs, "run_missing"]))

        @rule(workflow_id=st.sampled_from([GRAPH_ID, "missing_graph"]))
        def create_run(self, workflow_id: str) -> None:
            old, new = self.service.create_run(workflow_id), self.swapped.create_run(workflow_id)
            assert (old is None) == (new is None)
            if old is not None and new is not None:
                assert (new.id, new.last_message) == (old.id, old.last_message)

        @rule(
            data=st.data(),
            status=st.sampled_from(list(legacy.WorkflowRunStatus)),
            last_message=st.none() | st.text(max_size=8).filter(lambda t: "\x00" not in t),
            finished=st.none() | st.booleans(),
        )
        def update_run_status(
            self, data: st.DataObject, status: Any, last_message: str | None, finished: bool | None
        ) -> None:
            run_id = self.run_id(data)
            old = self.service.update_run_status(run_id, status, last_message, finished)
            new = self.swapped.update_run_status(run_id, status, last_message, finished)
            assert (old is None) == (new is None)
            if old is not None and status is legacy.WorkflowRunStatus.CANCELLED:
                # A change for its callers (API v3): a cancel, whatever the path, ends the unfinished nodes.
                states = self.service._run_node_states[run_id]
                for node_id, state in states.items():
                    if state.status in (legacy.WorkflowNodeStatus.IDLE, legacy.WorkflowNodeStatus.RUNNING):
                        states[node_id] = state.model_copy(
                            update={"status": legacy.WorkflowNodeStatus.CANCELLED}
                        )

        @rule(
            data=st.data(),
            node_id=st.sampled_from([*NODE_IDS, "extra"]),
            status=st.sampled_from(list(legacy.WorkflowNodeStatus)),
            progress=st.floats(0.0, 1.0),
        )
        def set_node_state(self, data: st.DataObject, node_id: str, status: Any, progress: float) -> None:
            run_id = self.run_id(data)
            run = self.service.get_run(run_id)
            if run is not None and run.status is legacy.WorkflowRunStatus.CANCELLED:
                # A change for its callers: a cancelled run's node states are final; a write that
                # changes nothing (the executor's wind-down) returns the stored state.
                current = self.service.get_node_state(run_id, node_id)
                requested = (node_id, "pending" if status.value == "idle" else status.value, progress)
                if current is not None and node_view(current) == requested:
                    kept = self.swapped.set_node_state(run_id, node_id, status=status, progress=progress)
                    assert kept is not None and node_view(kept) == requested
                    return
                with pytest.raises(ConflictError, match="is cancelled"):
                    self.swapped.set_node_state(run_id, node_id, status=status, progress=progress)
                return
            old = self.service.set_node_state(run_id, node_id, status=status, progress=progress)
            new = self.swapped.set_node_state(run_id, node_id, status=status, progress=progress)
            assert (old is None) == (new is None)
            if old is not None:
                assert node_view(new) == node_view(old)
                assert node_view(present(self.swapped.get_node_state(run_id, node_id))) == node_view(old)

        @invariant()
        def both_hold_the_same(self) -> None:
            assert_same(self.service, self.swapped)

    return Differential


def test_the_store_behaves_as_the_legacy_service(store: WorkflowStore) -> None:
    run_state_machine_as_test(make_machine(store))


# -- the service's dictionaries, imported -------------------------------------------------


def populated_service() -> legacy.WorkflowService:
    """A service that has done some work: runs in every status, nodes part way."""
    service = legacy.WorkflowService()
    statuses = list(legacy.WorkflowRunStatus)
    for index in range(12):
        run = present(service.create_run(GRAPH_ID))
        status = statuses[index % len(statuses)]
        service.update_run_status(
            run.id, status, f"step {index}", finished=status.value in ("completed", "failed")
        )
        for position, node_id in enumerate(NODE_IDS[: index % 5]):
            service.set_node_state(
                run.id, node_id, status=legacy.WorkflowNodeStatus.COMPLETED, progress=1.0 / (position + 1)
            )
        if index % 3 == 0:
            service.set_node_state(
                run.id, "generate", status=legacy.WorkflowNodeStatus.RUNNING, progress=0.25
            )
    # A later version's fields on one state: messages, error, timestamps.
    state = service._run_node_states["run_1"]["start"]
    state.messages, state.error = ["started", "✓ done"], "retry later"
    state.started_at, state.completed_at = datetime(2026, 5, 1, 8, 0, 0, 123456), datetime(2026, 5, 1, 8, 1)
    return service


def as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def assert_imported(store: WorkflowStore, service: legacy.WorkflowService) -> None:
    for old_graph in service.list_graphs():
        graph = present(store.get_graph(old_graph.id, project_id="default"))
        assert (graph.name, graph.description) == (old_graph.name, old_graph.description)
        assert graph.graph == {
            "nodes": [node.model_dump(mode="json") for node in old_graph.nodes],
            "edges": [edge.model_dump(mode="json") for edge in old_graph.edges],
        }
        assert list(graph.graph["nodes"][1]) == ["id", "label", "x", "y", "type", "config"]  # order kept
    assert store.count_runs() == len(service.list_runs())
    for old in service.list_runs():
        run = present(store.get_run(old.id, project_id="default"))
        assert (run.workflow_id, run.status.value, run.last_message) == (
            old.workflow_id,
            old.status.value,
            old.last_message,
        )
        assert run.started_at == as_utc(old.started_at)
        if old.finished_at is not None:
            assert run.finished_at == as_utc(old.finished_at)
        else:  # a terminal run the service never marked finished is finished at the import
            assert (run.finished_at is not None) == (old.status.value in ("completed", "failed", "cancelled"))
        states = store.list_node_states(old.id)
        old_states = service.list_node_states(old.id)
        assert [node_view(s) for s in states] == [node_view(s) for s in old_states]
        for new_state, old_state in zip(states, old_states, strict=True):
            assert new_state.messages == old_state.messages and new_state.error == old_state.error
            assert new_state.started_at == as_utc(old_state.started_at)
            assert new_state.completed_at == as_utc(old_state.completed_at)


def dump_snapshot(service: legacy.WorkflowService, path: Path) -> None:
    """README.md's recipe, word for word."""
    snapshot = {
        "graphs": {gid: g.model_dump() for gid, g in service._graphs.items()},
        "runs": {rid: r.model_dump() for rid, r in service._runs.items()},
        "node_states": {
            rid: {nid: s.model_dump() for nid, s in states.items()}
            for rid, states in service._run_node_states.items()
        },
    }
    with open(path, "w", encoding="utf-8") as file:
        json.dump(snapshot, file, default=str)  # datetimes -> ISO-8601 text, enums -> their values


def test_the_services_dictionaries_import_as_they_are(store: WorkflowStore) -> None:
    service = populated_service()
    report = import_memory(
        store, graphs=service._graphs, runs=service._runs, node_states=service._run_node_states
    )
    assert (report.graphs_written, report.runs_written) == (1, 12)
    assert_imported(store, service)
    again = import_memory(
        store, graphs=service._graphs, runs=service._runs, node_states=service._run_node_states
    )
    assert again.graphs_written == again.runs_written == again.node_states_written == 0


def test_a_snapshot_written_by_the_readme_recipe_imports_through_the_cli(
    db_url: str, store: WorkflowStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = populated_service()
    path = tmp_path / "snapshot.json"
    dump_snapshot(service, path)
    assert main(["--url", db_url, str(path)]) == 0
    assert "wrote 1 graphs, 12 runs" in capsys.readouterr().out
    assert_imported(store, service)

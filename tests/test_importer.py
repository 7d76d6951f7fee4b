"""SPEC.md case 1.4: the in-memory data moves into the database, on both databases."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from factories import present

import workflow_db
from workflow_db import (
    ConflictError,
    IntegrityError,
    ValidationError,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    WorkflowStore,
)
from workflow_db.importer import import_memory, main
from workflow_db.migrate import main as migrate_main


@pytest.fixture
def store_kind() -> str:
    """Sync only: the importer is a sync deploy tool: it takes a WorkflowStore."""
    return "sync"


@dataclass
class OldGraph:
    """What the old service kept: no project, no version."""

    id: str
    name: str
    graph: dict[str, Any]
    description: str | None = None
    created_at: datetime | None = None


@dataclass
class OldNodeState:
    node_id: str
    status: str = "pending"
    progress: float = 0.0
    messages: list[str] = field(default_factory=list)
    error: str | None = None


def old_service() -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    """The three dictionaries of the in-memory WorkflowService, items of mixed kinds."""
    graphs: dict[str, Any] = {
        "wf_1": OldGraph(
            "wf_1", "etl", {"nodes": [{"id": "a"}, {"id": "b"}]}, created_at=datetime(2026, 1, 2, 3, 4, 5)
        ),
        "wf_2": {"id": "wf_2", "name": "report", "graph": {"nodes": [{"id": "x"}]}, "project_id": "team"},
    }
    runs: dict[str, Any] = {
        "run_1": SimpleNamespace(
            id="run_1",
            workflow_id="wf_1",
            status=WorkflowRunStatus.RUNNING,
            input={"day": 1},
            output=None,
            started_at=datetime(2026, 1, 3, 0, 0, 0),
            finished_at=None,
            last_message="halfway",
        ),
        "run_2": {
            "workflow_id": "wf_2",
            "status": "completed",
            "output": [1, 2],
            "started_at": "2026-01-04T00:00:00+00:00",
            "finished_at": "2026-01-04T01:00:00+00:00",
        },
    }
    node_states: dict[str, dict[str, Any]] = {
        "run_1": {
            "a": OldNodeState("a", "completed", 1.0, ["done"]),
            "b": {"node_id": "b", "status": WorkflowNodeStatus.RUNNING, "progress": 0.5},
        },
        "run_2": {
            "x": SimpleNamespace(node_id="x", status="completed", progress=1.0, messages=[], error=None)
        },
    }
    return graphs, runs, node_states


def test_imports_everything_with_integrity(store: WorkflowStore) -> None:
    graphs, runs, states = old_service()
    report = import_memory(store, graphs, runs, states)
    assert (report.graphs_written, report.runs_written, report.node_states_written) == (2, 2, 3)
    etl = present(store.get_graph("wf_1"))
    assert etl.project_id == "default" and etl.version == 1 and etl.graph == graphs["wf_1"].graph
    assert etl.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # naive taken as UTC
    assert store.get_project("default") is not None and store.get_project("team") is not None
    run_1 = present(store.get_run("run_1"))
    assert run_1.project_id == "default" and run_1.status is WorkflowRunStatus.RUNNING
    assert run_1.input == {"day": 1} and run_1.last_message == "halfway" and run_1.workflow_version == 1
    assert run_1.started_at == datetime(2026, 1, 3, tzinfo=UTC)
    run_2 = present(store.get_run("run_2"))
    assert run_2.project_id == "team"  # inherited from its graph
    assert run_2.output == [1, 2] and run_2.finished_at == datetime(2026, 1, 4, 1, tzinfo=UTC)
    assert [(s.node_id, s.status.value, s.progress, s.messages) for s in store.list_node_states("run_1")] == [
        ("a", "completed", 1.0, ["done"]),
        ("b", "running", 0.5, []),
    ]
    assert store.list_runs(project_id="team") == [run_2]


def test_running_it_again_changes_nothing(store: WorkflowStore) -> None:
    graphs, runs, states = old_service()
    import_memory(store, graphs, runs, states)
    before = (store.list_graphs(), store.list_runs(), store.list_node_states("run_1"))
    report = import_memory(store, graphs, runs, states)
    assert (report.graphs_written, report.runs_written, report.node_states_written) == (0, 0, 0)
    assert (report.graphs_skipped, report.runs_skipped, report.node_states_skipped) == (2, 2, 3)
    assert (store.list_graphs(), store.list_runs(), store.list_node_states("run_1")) == before


def test_untouched_states_of_create_run_are_not_conflicts(store: WorkflowStore) -> None:
    graphs, runs, states = old_service()
    import_memory(store, graphs, runs, {})
    assert present(store.get_node_state("run_1", "a")).status is WorkflowNodeStatus.PENDING
    report = import_memory(store, graphs, runs, states)
    assert report.node_states_written == 3
    assert present(store.get_node_state("run_1", "a")).messages == ["done"]


def test_conflicting_ids_need_overwrite(store: WorkflowStore) -> None:
    graphs, runs, states = old_service()
    import_memory(store, graphs, runs, states)
    runs["run_1"].last_message = "changed since"
    with pytest.raises(ConflictError, match=r"runs\['run_1'\].*last_message"):
        import_memory(store, graphs, runs, states)
    assert present(store.get_run("run_1")).last_message == "halfway"
    states["run_1"]["a"].progress = 0.9
    with pytest.raises(ConflictError, match=r"node_states\['run_1'\]\['a'\].*progress"):
        import_memory(store, graphs, {}, states)
    report = import_memory(store, graphs, runs, states, overwrite=True)
    assert (report.runs_written, report.node_states_written) == (1, 1)
    assert present(store.get_run("run_1")).last_message == "changed since"
    assert present(store.get_run("run_1")).input == {"day": 1}
    assert present(store.get_node_state("run_1", "a")).progress == 0.9
    graphs["wf_1"].name = "renamed"
    import_memory(store, graphs, {}, {}, overwrite=True)
    graph = present(store.get_graph("wf_1"))
    assert graph.version == 2 and graph.name == "renamed"


Snapshot = dict[str, Any]  # the old service's dictionaries, as broken in place below


def _nothing_written(store: WorkflowStore) -> bool:
    return store.list_graphs() == [] and store.count_runs() == 0 and store.get_project("default") is None


def _unknown_workflow(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    runs["run_1"].workflow_id = "wf_gone"


def _state_of_unknown_run(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    states["run_9"] = {"a": {"status": "running"}}


def _bad_status(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    runs["run_2"]["status"] = "exploded"


def _bad_progress(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    states["run_1"]["b"]["progress"] = 7


def _key_differs_from_id(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    graphs["wf_3"] = {"id": "other", "name": "n", "graph": {"nodes": []}}


def _bad_graph(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    graphs["wf_2"]["graph"] = {"nodes": "none"}


def _project_mismatch(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    runs["run_2"]["project_id"] = "default"


def _bad_timestamp(graphs: Snapshot, runs: Snapshot, states: Snapshot) -> None:
    runs["run_2"]["started_at"] = "yesterday"


Breakage = Callable[[Snapshot, Snapshot, Snapshot], None]
BREAKAGES: dict[Breakage, tuple[type[Exception], str]] = {
    _unknown_workflow: (IntegrityError, r"runs\['run_1'\]: workflow_id"),
    _state_of_unknown_run: (IntegrityError, r"node_states\['run_9'\]\['a'\]: run_id"),
    _bad_status: (ValidationError, r"runs\['run_2'\]: status"),
    _bad_progress: (ValidationError, r"node_states\['run_1'\]\['b'\]: progress"),
    _key_differs_from_id: (ValidationError, r"graphs\['wf_3'\]: id"),
    _bad_graph: (ValidationError, r"graphs\['wf_2'\]: graph"),
    _project_mismatch: (ValidationError, r"runs\['run_2'\]: project_id"),
    _bad_timestamp: (ValidationError, r"runs\['run_2'\]: started_at: .*ISO-8601"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__.strip("_"))
def test_a_broken_item_refuses_the_whole_import(store: WorkflowStore, breakage: Breakage) -> None:
    graphs, runs, states = old_service()
    breakage(graphs, runs, states)
    error, message = BREAKAGES[breakage]
    with pytest.raises(error, match=message):
        import_memory(store, graphs, runs, states)
    assert _nothing_written(store)


def test_dry_run_reports_and_writes_nothing(store: WorkflowStore) -> None:
    graphs, runs, states = old_service()
    report = import_memory(store, graphs, runs, states, dry_run=True)
    assert report.dry_run and (report.graphs_written, report.runs_written, report.node_states_written) == (
        2,
        2,
        3,
    )
    assert report.summary().startswith("would write 2 graphs, 2 runs, 3 node states")
    assert _nothing_written(store)


def write_snapshot(path: Path) -> Path:
    graphs, runs, _ = old_service()
    snapshot = {
        "graphs": {"wf_1": {"name": "etl", "graph": graphs["wf_1"].graph}, "wf_2": graphs["wf_2"]},
        "runs": {"run_2": runs["run_2"]},
        "node_states": {"run_2": {"x": {"status": "completed", "progress": 1.0}}},
    }
    path.write_text(json.dumps(snapshot))
    return path


def test_command_line(
    db_url: str, store: WorkflowStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = write_snapshot(tmp_path / "snapshot.json")
    assert main(["--url", db_url, "--dry-run", str(snapshot)]) == 0
    assert capsys.readouterr().out.startswith("would write 2 graphs, 1 runs, 1 node states")
    assert store.count_runs() == 0
    assert main(["--url", db_url, str(snapshot)]) == 0
    assert capsys.readouterr().out.startswith("wrote 2 graphs, 1 runs, 1 node states")
    assert present(store.get_node_state("run_2", "x")).status is WorkflowNodeStatus.COMPLETED
    assert main(["--url", db_url, str(snapshot)]) == 0
    assert "skipped 2 graphs, 1 runs, 1 node states" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"runs": []}', "runs must be an object"),
        ('{"flows": {}}', "unknown key"),
    ],
)
def test_command_line_malformed_snapshot(
    db_url: str, tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    assert main(["--url", db_url, str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_command_line_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "oracle://x", str(tmp_path / "s.json")]) == 2
    assert main([]) == 2
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["--url", url, str(tmp_path / "missing.json")]) == 1
    assert "no SQLite database at" in capsys.readouterr().err and not (tmp_path / "x.db").exists()
    assert migrate_main(["--url", url, "up"]) == 0
    capsys.readouterr()
    assert main(["--url", url, str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err


def test_items_of_every_kind_are_read_as_the_json_they_dump_to(store: WorkflowStore) -> None:
    from pydantic import v1 as pydantic_v1  # pydantic 2 ships the v1 API: the service may still use it

    class V1Node(pydantic_v1.BaseModel):
        id: str
        label: str
        x: float
        y: float

    @dataclass
    class DataclassEdge:
        id: str
        source: str
        target: str

    nodes = [V1Node(id="a", label="A", x=1.5, y=2.0), SimpleNamespace(id="b", label="B", x=3.0, y=4.0)]
    graphs = {
        "wf_v1": SimpleNamespace(
            id="wf_v1", name="mixed", nodes=nodes, edges=[DataclassEdge("e1", "a", "b")]
        ),
        "wf_dict": {"id": "wf_dict", "name": "plain", "nodes": [{"id": "x", "config": {"k": [1, 2]}}]},
    }
    states = {
        "r": {"a": V1Node(id="a", label="A", x=0, y=0)}
    }  # a model without state fields: as create_run made it
    report = import_memory(store, graphs=graphs, runs={"r": {"workflow_id": "wf_v1", "status": "running"}})
    assert report.graphs_written == 2
    assert present(store.get_graph("wf_v1")).graph == {
        "nodes": [
            {"id": "a", "label": "A", "x": 1.5, "y": 2.0},
            {"id": "b", "label": "B", "x": 3.0, "y": 4.0},
        ],
        "edges": [{"id": "e1", "source": "a", "target": "b"}],
    }
    assert present(store.get_graph("wf_dict")).graph == {"nodes": [{"id": "x", "config": {"k": [1, 2]}}]}
    with pytest.raises(ValidationError, match=r"node_states\['r'\]\['a'\]: node_id"):
        import_memory(store, node_states={"r": {"a": {"node_id": "b"}}})
    assert (
        import_memory(store, node_states=states).node_states_written == 0
    )  # the state as create_run made it


def test_the_command_line_says_what_it_does_and_prints_its_summary_once(
    db_url: str, store: WorkflowStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(json.dumps({"graphs": {"g": {"name": "g", "nodes": [{"id": "a"}]}},
                                    "runs": {"r": {"workflow_id": "g", "status": "running"}}}))  # fmt: skip
    dry_run = subprocess.run(
        [sys.executable, "-m", "workflow_db.importer", "--url", db_url, "--dry-run", str(snapshot)],
        capture_output=True, text=True,
    )  # fmt: skip
    out, err = dry_run.stdout, dry_run.stderr
    assert dry_run.returncode == 0
    summary = (
        "would write 1 graphs, 1 runs, 0 node states; skipped 0 graphs, 0 runs, 0 node states already stored"
    )
    assert out == summary + "\n"
    assert "reading" in err and "would be written (dry run)" in err and "would write" not in err
    assert store.list_graphs() == []
    imported = subprocess.run(
        [sys.executable, "-m", "workflow_db.importer", "--url", db_url, str(snapshot)],
        capture_output=True,
        text=True,
    )
    assert imported.stdout.startswith("wrote 1 graphs, 1 runs") and "wrote" not in imported.stderr
    snapshot.write_text(json.dumps({"graphs": {"g": {"name": "renamed", "nodes": [{"id": "a"}]}}}))
    assert main(["--url", db_url, str(snapshot)]) == 1
    assert "pass overwrite=True (--overwrite on the command line)" in capsys.readouterr().err
    assert main(["--url", db_url, "--overwrite", str(snapshot)]) == 0
    assert present(store.get_graph("g")).name == "renamed"


@pytest.mark.parametrize("module", ["workflow_db.migrate", "workflow_db.importer"])
def test_both_command_lines_tell_their_version(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout == f"python -m {module} (workflow_db {workflow_db.__version__})\n"
    assert workflow_db.__version__ == importlib.metadata.version("workflow_db")


def test_a_big_import_holds_one_batch_besides_its_input(store: WorkflowStore) -> None:
    """Peak memory of import_memory beyond its input: a batch, never a second copy of the input."""
    tracemalloc.start()
    try:
        graphs = {"g": {"name": "g", "nodes": [{"id": f"n{i}", "label": f"Node {i}"} for i in range(10)]}}
        runs = {f"r{r}": {"workflow_id": "g", "status": "completed", "started_at": "2026-01-01 10:00:00",
                          "last_message": "finished"} for r in range(3000)}  # fmt: skip
        states = {run_id: {f"n{i}": {"status": "completed", "progress": 1.0, "messages": ["started", "done"]}
                           for i in range(10)} for run_id in runs}  # fmt: skip
        input_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        report = import_memory(store, graphs=graphs, runs=runs, node_states=states)
        beyond_input = tracemalloc.get_traced_memory()[1] - input_bytes
    finally:
        tracemalloc.stop()
    assert report.node_states_written == 30_000
    assert beyond_input < 0.5 * input_bytes, (beyond_input, input_bytes)

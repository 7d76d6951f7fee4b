"""SPEC.md sections 3, 4 and 8: runs, status updates and integrity, on both databases."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PostgresServer, require_pg
from factories import graph_structure, make_graph, present

from workflow_db import (
    ConflictError,
    IntegrityError,
    ValidationError,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
)
from workflow_db.dialects.base import fetch_one, fetch_rowcount
from workflow_db.models import LazyFields, LazyRecords


def test_create_run_persists_with_initial_node_states(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a", "extract", "transform", "load")
    run = store.create_run(graph.id, {"rows": 10})
    assert run.status is WorkflowRunStatus.PENDING
    assert (run.project_id, run.workflow_id, run.workflow_version) == ("proj_a", graph.id, 1)
    assert run.input == {"rows": 10} and run.output is None and run.finished_at is None
    assert store.get_run(run.id) == run
    states = store.list_node_states(run.id)
    assert [s.node_id for s in states] == ["extract", "transform", "load"]
    assert {s.status for s in states} == {WorkflowNodeStatus.PENDING}
    assert all(s.progress == 0.0 and s.messages == [] and s.started_at is None for s in states)


def test_create_run_with_project_id(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a")
    run = store.create_run(graph.id, project_id="proj_a", id="run-1")
    assert run.id == "run-1" and present(store.get_run("run-1")).project_id == "proj_a"
    assert [r.id for r in store.list_runs(project_id="proj_a")] == ["run-1"]


def test_create_run_with_a_graph_of_another_project_is_like_an_unknown_graph(store: WorkflowStore) -> None:
    graph = make_graph(store, "proj_a")
    store.ensure_project("proj_b")
    with pytest.raises(IntegrityError) as other_project:
        store.create_run(graph.id, project_id="proj_b")
    with pytest.raises(IntegrityError) as unknown:
        store.create_run("wf_missing", project_id="proj_b")
    assert str(other_project.value) == str(unknown.value).replace("wf_missing", graph.id)
    assert "proj_a" not in str(other_project.value)
    assert store.count_runs() == 0


def test_run_of_unknown_workflow_is_integrity_error(store: WorkflowStore) -> None:
    with pytest.raises(IntegrityError, match="workflow_id"):
        store.create_run("wf_missing", {"a": 1})
    assert store.count_runs() == 0


def test_duplicate_run_id_is_integrity_error(store: WorkflowStore) -> None:
    graph = make_graph(store)
    store.create_run(graph.id, id="r")
    with pytest.raises(IntegrityError, match="already exists"):
        store.create_run(graph.id, id="r")
    assert store.count_runs() == 1


@pytest.mark.parametrize("bad", ["exploded", "", 3, None])
def test_invalid_status_is_validation_error(store: WorkflowStore, bad: object) -> None:
    graph = make_graph(store)
    with pytest.raises(ValidationError, match="pending, running, paused, completed, failed, cancelled"):
        store.create_run(graph.id, status=bad)  # type: ignore[arg-type]
    assert store.count_runs() == 0


@pytest.mark.parametrize(("field", "value"), [("input", {1, 2}), ("input", float("inf"))])
def test_unserialisable_input_is_refused(store: WorkflowStore, field: str, value: object) -> None:
    graph = make_graph(store)
    with pytest.raises(ValidationError, match=field):
        store.create_run(graph.id, value)
    assert store.count_runs() == 0


def test_status_accepts_member_or_value(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id, status="running")
    assert run.status is WorkflowRunStatus.RUNNING
    assert store.list_runs(status="running") == [run]


def test_terminal_status_at_creation_sets_finished_at(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id, status=WorkflowRunStatus.CANCELLED)
    assert run.finished_at == run.started_at


def test_list_runs_filters(store: WorkflowStore) -> None:
    graph_a = make_graph(store, "proj_a")
    graph_b = make_graph(store, "proj_b")
    a_pending = store.create_run(graph_a.id)
    a_running = store.create_run(graph_a.id, status="running")
    b_running = store.create_run(graph_b.id, status="running")
    b_failed = store.create_run(graph_b.id, status="failed")

    assert store.list_runs(project_id="proj_a") == [a_running, a_pending]
    assert store.list_runs(status=WorkflowRunStatus.RUNNING) == [b_running, a_running]
    assert store.list_runs(workflow_id=graph_b.id) == [b_failed, b_running]
    assert store.list_runs(project_id="proj_b", status="running") == [b_running]
    assert store.list_runs(status=["failed", WorkflowRunStatus.PENDING]) == [b_failed, a_pending]
    assert store.list_runs() == [b_failed, b_running, a_running, a_pending]
    assert store.list_runs(project_id="nobody") == []
    assert store.count_runs(project_id="proj_a") == 2
    assert store.count_runs(status=("running", "failed")) == 3
    assert store.count_runs(workflow_id=graph_b.id, status="failed") == 1
    with pytest.raises(ValidationError, match="status"):
        store.list_runs(status="sleeping")


def test_list_runs_updated_before_finds_untouched_runs(store: WorkflowStore) -> None:
    graph = make_graph(store)
    stale = store.create_run(graph.id, status="running")
    fresh = store.create_run(graph.id, status="running")
    cutoff = present(store.update_run_status(fresh.id, last_message="heartbeat")).updated_at
    orphans = store.list_runs(status="running", updated_before=cutoff)
    assert [r.id for r in orphans] == [stale.id]
    assert store.count_runs(updated_before=cutoff + timedelta(microseconds=1)) == 2
    with pytest.raises(ValidationError, match="naive"):
        store.list_runs(updated_before=datetime(2030, 1, 1))


def test_pagination_visits_every_run_once_in_order(store: WorkflowStore) -> None:
    graph = make_graph(store)
    created = [store.create_run(graph.id).id for _ in range(23)]
    seen: list[str] = []
    page = store.list_runs(limit=5)
    while page:
        seen += [r.id for r in page]
        page = store.list_runs(limit=5, after=page[-1] if len(seen) % 2 else page[-1].id)
    assert seen == created[::-1]
    with pytest.raises(ValidationError, match="after"):
        store.list_runs(after="missing-run")
    with pytest.raises(ValidationError, match="limit"):
        store.list_runs(limit=0)


def test_update_run_status_persists(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    updated = present(store.update_run_status(run.id, status=WorkflowRunStatus.RUNNING))
    assert updated.status is WorkflowRunStatus.RUNNING and updated.finished_at is None
    assert updated.updated_at > run.updated_at and updated.started_at == run.started_at
    assert store.get_run(run.id) == updated


def test_update_run_with_finished_flag(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id, status="running")
    done = present(store.update_run_status(run.id, status=WorkflowRunStatus.COMPLETED, finished=True))
    assert done.status is WorkflowRunStatus.COMPLETED and done.finished_at is not None
    assert present(present(store.get_run(run.id))).finished_at == done.finished_at
    again = present(store.update_run_status(run.id, status="failed"))
    assert again.finished_at == done.finished_at  # the first finished_at is kept
    reopened = present(store.update_run_status(run.id, status="running"))
    assert reopened.finished_at is None  # leaving a terminal status clears it
    flagged = present(store.update_run_status(run.id, finished=True))
    assert flagged.status is WorkflowRunStatus.RUNNING and flagged.finished_at is not None


def test_update_run_last_message_and_output(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    store.update_run_status(run.id, last_message="Processing...")
    assert present(store.get_run(run.id)).last_message == "Processing..."
    store.update_run_status(run.id, output={"rows": [1, 2]})
    fetched = present(store.get_run(run.id))
    assert fetched.output == {"rows": [1, 2]} and fetched.last_message == "Processing..."
    assert fetched.status is WorkflowRunStatus.PENDING


def test_update_nonexistent_run_returns_none(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    assert store.update_run_status("nonexistent", status="running") is None
    assert store.update_run_status("nonexistent", status="running", expected_status="pending") is None
    assert store.count_runs() == 1 and store.get_run(run.id) == run


def test_update_run_status_compare_and_set(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    claimed = present(store.update_run_status(run.id, "running", expected_status="pending"))
    assert claimed.status is WorkflowRunStatus.RUNNING
    with pytest.raises(ConflictError, match="running, not the expected pending"):
        store.update_run_status(run.id, "completed", expected_status="pending")
    assert store.get_run(run.id) == claimed


def test_update_run_status_bad_input_writes_nothing(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    with pytest.raises(ValidationError, match="status"):
        store.update_run_status(run.id, "bogus")
    with pytest.raises(ValidationError, match="output"):
        store.update_run_status(run.id, "running", output=object())
    with pytest.raises(ValidationError, match="last_message"):
        store.update_run_status(run.id, "running", last_message="nul\x00")
    with pytest.raises(ValidationError, match="finished: expected True or False"):
        store.update_run_status(run.id, "running", finished="no")  # type: ignore[arg-type]
    assert store.get_run(run.id) == run


def test_updated_at_grows_strictly_on_runs(store: WorkflowStore) -> None:
    graph = make_graph(store)
    run = store.create_run(graph.id)
    stamps = [run.updated_at] + [present(store.update_run_status(run.id)).updated_at for _ in range(30)]
    assert all(a < b for a, b in itertools.pairwise(stamps))


def test_runs_keep_their_graph_version(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a", "b")
    old_run = store.create_run(graph.id)
    store.set_node_state(old_run.id, "a", progress=0.5)
    store.update_graph(graph.id, graph=graph_structure("x", "y", "z"))
    new_run = store.create_run(graph.id)
    assert old_run.workflow_version == 1 and new_run.workflow_version == 2
    assert [s.node_id for s in store.list_node_states(old_run.id)] == ["a", "b"]
    assert [s.node_id for s in store.list_node_states(new_run.id)] == ["x", "y", "z"]
    assert present(store.get_graph(graph.id, version=old_run.workflow_version)).graph == graph.graph


def test_prune_runs_deletes_only_old_terminal_runs(store: WorkflowStore) -> None:
    graph_a = make_graph(store, "proj_a")
    graph_b = make_graph(store, "proj_b")
    done = [store.create_run(graph_a.id, status="completed") for _ in range(5)]
    other_project = store.create_run(graph_b.id, status="failed")
    running = store.create_run(graph_a.id, status="running")
    flagged = present(store.update_run_status(running.id, finished=True))  # finished_at set, not terminal
    cutoff = datetime.now(UTC)
    late = store.create_run(graph_a.id, status="cancelled")
    assert present(late.finished_at) > cutoff
    assert store.prune_runs(cutoff - timedelta(days=1)) == 0
    assert store.prune_runs(cutoff, project_id="proj_a", batch_size=2) == 5
    assert store.get_run(late.id) is not None
    assert all(store.get_run(r.id) is None for r in done)
    assert all(store.list_node_states(r.id) == [] for r in done)
    assert store.get_run(other_project.id) is not None
    assert store.get_run(flagged.id) is not None
    assert store.prune_runs(cutoff) == 1
    with pytest.raises(ValidationError, match="finished_before"):
        store.prune_runs(datetime(2030, 1, 1))
    for bad in (0, None, 2.5):
        with pytest.raises(ValidationError, match="batch_size: expected an integer from 1"):
            store.prune_runs(cutoff, batch_size=bad)  # type: ignore[arg-type]


def test_records_behave_like_frozen_dataclasses(store: WorkflowStore) -> None:
    import copy
    import pickle
    import threading

    graph = make_graph(store, "p", "a")
    run = store.create_run(graph.id, {"k": [1, 2]})
    listed = store.list_runs()[0]
    assert listed == run and repr(listed) == repr(run)
    assert dataclasses.asdict(present(store.get_run(run.id))) == dataclasses.asdict(run)
    assert pickle.loads(pickle.dumps(store.get_run(run.id))) == run
    assert copy.deepcopy(store.get_run(run.id)) == run
    assert dataclasses.replace(present(store.get_run(run.id)), last_message="x").last_message == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        listed.status = WorkflowRunStatus.FAILED  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no attribute 'stauts'"):
        _ = present(store.get_run(run.id)).stauts  # type: ignore[attr-defined]
    state = store.list_node_states(run.id)[0]
    assert state == store.get_node_state(run.id, "a") and state.status is WorkflowNodeStatus.PENDING
    shared = present(store.get_run(run.id))
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(shared.input)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [{"k": [1, 2]}] * 8


def test_json_written_by_other_tools_decodes(store: WorkflowStore) -> None:
    """Stored JSON with whitespace around it (hand-written SQL, another tool) reads back the same."""
    graph = make_graph(store, "p", "a")
    run = store.create_run(graph.id)
    loose = '  {"rows": [1, 2] ,\n "ok": true}  '
    store.db.write(
        "UPDATE workflow_runs SET input_json = :input, output_json = :output WHERE id = :id",
        {"input": store.db.encode_json(loose), "output": store.db.encode_json(" 7"), "id": run.id},
        fetch_rowcount,
    )
    for fetched in (store.get_run(run.id), store.list_runs()[0]):
        assert fetched is not None
        assert (fetched.input, fetched.output) == ({"rows": [1, 2], "ok": True}, 7)


def test_timestamps_are_utc_whatever_the_session_time_zone(pg_server: PostgresServer | None) -> None:
    server = require_pg(pg_server)
    name = server.create_database(template=server.template)
    try:
        with server.admin() as admin:
            admin.execute(f"ALTER DATABASE {name} SET timezone = 'Asia/Kolkata'")
        with connect(server.client_url_for(name)) as db:
            store = WorkflowStore(db)
            graph = make_graph(store, "p", "a")
            created = store.create_run(graph.id)
            for run in (store.get_run(created.id), store.list_runs()[0]):
                assert run is not None and run.started_at == created.started_at
                assert run.started_at.tzinfo is UTC and run.updated_at.tzinfo is UTC
            assert db.read("SHOW timezone", (), fetch_one) == ("Asia/Kolkata",)
    finally:
        server.drop_database(name)


def test_lazy_records_refuse_a_class_without_lazy_fields_or_a_second_decoder() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain(LazyFields):
        value: int

    with pytest.raises(TypeError, match="not decorated with @decoded_on_read"):
        LazyRecords(Plain, lambda row: row)
    with pytest.raises(TypeError, match="WorkflowRun already has a row decoder"):
        LazyRecords(WorkflowRun, lambda row: row)

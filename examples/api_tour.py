"""A tour of the sync API on SQLite (./workflow.db): projects, graphs, runs, node states, pages."""

from workflow_db import WorkflowGraph, WorkflowRunStatus, WorkflowStore, connect
from workflow_db.migrate import upgrade

with connect("sqlite:///workflow.db") as db:
    upgrade(db)  # idempotent
    store = WorkflowStore(db)  # max_json_bytes=16 MiB per JSON value
    store.ensure_project("proj_a", "Project A")
    graph = store.create_graph(
        WorkflowGraph(
            "proj_a",
            "etl",
            {
                "nodes": [{"id": "extract"}, {"id": "load"}],
                "edges": [{"source": "extract", "target": "load"}],
            },
        )
    )
    run = store.create_run(graph.id, {"day": "2026-11-26"})  # + a PENDING state per node
    store.update_run_status(run.id, WorkflowRunStatus.RUNNING, expected_status="pending")
    store.set_node_state(run.id, "extract", progress=0.5)  # PENDING -> RUNNING
    store.append_node_message(run.id, "extract", "10k rows")  # atomic, constant time
    store.set_node_state(run.id, "extract", status="completed", progress=1.0)
    with store.transaction():  # all or nothing
        store.set_node_state(run.id, "load", status="completed", progress=1.0)
        store.update_run_status(run.id, "completed", output={"rows": 10_000})
    page = store.list_runs(project_id="proj_a", status="completed", limit=50)
    next_page = store.list_runs(project_id="proj_a", status="completed", limit=50, after=page[-1])

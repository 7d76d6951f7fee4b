from workflow_db import WorkflowGraph, WorkflowStore, connect
from workflow_db.migrate import upgrade

with connect("sqlite:///workflow.db") as db:  # or postgresql://user@host/db
    upgrade(db)  # what `python -m workflow_db.migrate` does in a deploy
    store = WorkflowStore(db)
    store.ensure_project("proj_a")
    nodes = [{"id": "extract"}, {"id": "load"}]
    graph = store.create_graph(WorkflowGraph("proj_a", "etl", {"nodes": nodes}))
    run = store.create_run(graph.id, {"day": "2026-12-06"})  # a PENDING state per node
    store.update_run_status(run.id, "running")
    store.set_node_state(run.id, "extract", status="completed", progress=1.0)
    store.append_node_message(run.id, "load", "10,000 rows")
    print(store.count_runs("proj_a", status="running"), "running run")
    for node in store.list_node_states(run.id):
        print(node.node_id, node.status.value, node.progress, node.messages)

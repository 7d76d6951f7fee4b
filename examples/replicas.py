"""Two replicas and one run: a lease, a stall past it, a takeover, and the fence that stops the stalled one.

python -m workflow_db.migrate && python examples/replicas.py    # $WORKFLOW_DB_URL, or ./workflow.db
"""

import time

from workflow_db import ConflictError, WorkflowGraph, WorkflowStore, connect

with connect() as db:
    store = WorkflowStore(db)
    store.ensure_project("proj_a")
    graph = store.create_graph(WorkflowGraph("proj_a", "one step", {"nodes": [{"id": "step"}]}))
    run = store.create_run(graph.id, status="running", id=f"run-{time.time_ns()}")

    held = store.claim_run(run.id, "replica-a", lease_seconds=0.5)  # renew every lease/3 while working
    assert held is not None
    store.set_node_state(run.id, "step", progress=0.5, lease_token=held.lease_token)
    time.sleep(0.6)  # replica-a stalls past its lease (a GC pause, a slow minute) ...

    (taken,) = store.claim_orphaned_runs("replica-b", lease_seconds=60)  # ... and replica-b takes over
    print("replica-b holds the run with lease", taken.lease_token, "after", held.lease_token)
    try:  # replica-a wakes up and writes: the fence refuses it, nothing is written
        store.set_node_state(run.id, "step", progress=0.9, lease_token=held.lease_token)
    except ConflictError as exc:
        print("replica-a:", str(exc).replace(run.id, "<run>"))

    store.set_node_state(run.id, "step", status="completed", progress=1.0, lease_token=taken.lease_token)
    done = store.update_run_status(run.id, "completed", lease_token=taken.lease_token)  # also releases it
    assert done is not None
    print(done.status.value, "owner:", done.owner, "progress:", store.list_node_states(run.id)[0].progress)

"""A first look at workflow_db: migrate, create a graph, run it to completion, print it.

python scripts/demo.py                      # a throw-away SQLite database, removed afterwards
python scripts/demo.py --url postgresql://user@host/db    # writes a project "demo" there
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile

from workflow_db import WorkflowGraph, WorkflowRunStatus, WorkflowStore, connect
from workflow_db.migrate import upgrade

NODES = ("extract", "transform", "load")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a throw-away SQLite file, removed afterwards)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="workflow_db-demo-") as scratch:
        return _demo(args.url or f"sqlite:///{scratch}/demo.db")


def _demo(url: str) -> int:
    with connect(url) as db:
        upgrade(db)
        store = WorkflowStore(db)
        store.ensure_project("demo", "Demo project")
        structure = {
            "nodes": [{"id": node, "type": "task"} for node in NODES],
            "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(NODES)],
        }
        graph = store.create_graph(WorkflowGraph("demo", "nightly etl", structure))
        run = store.create_run(graph.id, {"day": "today"})
        store.update_run_status(run.id, WorkflowRunStatus.RUNNING, last_message="started")
        for node in NODES:
            for step in (0.25, 0.5, 1.0):
                store.set_node_state(run.id, node, progress=step)
            store.append_node_message(run.id, node, f"{node} done")
            store.set_node_state(run.id, node, status="completed")
        done = store.update_run_status(run.id, "completed", output={"rows": 42}, last_message="all done")
        assert done is not None and done.finished_at is not None
        print(f"run {done.id} of {graph.name!r} (version {done.workflow_version}) in {db.dialect}")
        print(f"  status {done.status.value}, output {done.output}, finished {done.finished_at:%H:%M:%S.%f}")
        print(f"  {'node':<10} {'status':<10} {'progress':>8}  messages")
        for state in store.list_node_states(run.id):
            print(f"  {state.node_id:<10} {state.status.value:<10} {state.progress:>8.2f}  {state.messages}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

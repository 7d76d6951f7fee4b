"""Move the in-memory service's three dictionaries into the database, in one transaction.

    python -m workflow_db.migrate && python examples/import_legacy.py    # $WORKFLOW_DB_URL, or ./workflow.db

The service's own pydantic models, as it holds them (no project, naive UTC
times, node status "idle"); running it again changes nothing.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from workflow_db import WorkflowStore, connect
from workflow_db.importer import import_memory


class NodeStatus(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"


class Node(BaseModel):
    id: str
    label: str
    x: float
    y: float


class Edge(BaseModel):
    id: str
    source: str
    target: str


class Graph(BaseModel):
    id: str
    name: str
    description: str | None = None
    nodes: list[Node]
    edges: list[Edge]


class Run(BaseModel):
    id: str
    workflow_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    last_message: str | None = None


class NodeState(BaseModel):
    node_id: str
    status: NodeStatus
    progress: float


graph = Graph(
    id="default_retrieval_graph",
    name="Default retrieval",
    nodes=[Node(id="start", label="Start", x=0, y=0), Node(id="finalize", label="Finalize", x=120, y=0)],
    edges=[Edge(id="e1", source="start", target="finalize")],
)
runs = {"run_1": Run(id="run_1", workflow_id=graph.id, status="running", started_at=datetime(2026, 12, 1, 9))}
node_states = {
    "run_1": {
        "start": NodeState(node_id="start", status=NodeStatus.COMPLETED, progress=1.0),
        "finalize": NodeState(node_id="finalize", status=NodeStatus.IDLE, progress=0.0),
    }
}

with connect() as db:
    store = WorkflowStore(db)
    for attempt in ("first", "again"):
        report = import_memory(
            store, graphs={graph.id: graph}, runs=runs, node_states=node_states, default_project_id="default"
        )
        print(f"{attempt}: {report.summary()}")
    print([(s.node_id, s.status.value) for s in store.list_node_states("run_1", project_id="default")])

"""The in-memory WorkflowService as it is today (../shared/LEGACY.md), rebuilt for the tests.

Its own pydantic v2 models and ``str`` enums, its three dictionaries and its
calls, written as that service writes them: naive UTC timestamps, run ids
``run_1``, ``run_2``, ..., node states created IDLE in graph order.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class WorkflowRunStatus(str, Enum):  # noqa: UP042 - declared as the service declares it
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowNodeStatus(str, Enum):  # noqa: UP042
    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowNode(BaseModel):
    # Some nodes also carry ``type`` and ``config``: kept as extra fields, absent on the others.
    model_config = ConfigDict(extra="allow")
    id: str
    label: str
    x: float
    y: float


class WorkflowEdge(BaseModel):
    id: str
    source: str
    target: str


class WorkflowGraph(BaseModel):
    id: str
    name: str
    description: str | None = None
    nodes: list[WorkflowNode]
    edges: list[WorkflowEdge]


class WorkflowRun(BaseModel):
    id: str
    workflow_id: str
    status: WorkflowRunStatus
    started_at: datetime
    finished_at: datetime | None = None
    last_message: str | None = None


class WorkflowNodeState(BaseModel):
    node_id: str
    status: WorkflowNodeStatus
    progress: float
    messages: list[str] = Field(default_factory=list)
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


def default_graph() -> WorkflowGraph:
    """``default_retrieval_graph``: six nodes from ``start`` to ``finalize``."""
    names = ["start", "retrieve", "rerank", "generate", "review", "finalize"]
    nodes = [
        WorkflowNode(id=name, label=name.title(), x=120.0 * index, y=80.5) for index, name in enumerate(names)
    ]
    nodes[1] = WorkflowNode.model_validate(
        {"id": "retrieve", "label": "Retrieve", "x": 120.0, "y": 80.5, "type": "tool",
         "config": {"top_k": 8, "index": "docs"}}
    )  # fmt: skip
    nodes[3] = WorkflowNode.model_validate(
        {"id": "generate", "label": "Generate", "x": 360.0, "y": 80.5, "type": "llm",
         "config": {"model": "m", "temperature": 0.2}}
    )  # fmt: skip
    edges = [
        WorkflowEdge(id=f"e{index}", source=source, target=target)
        for index, (source, target) in enumerate(itertools.pairwise(names), start=1)
    ]
    return WorkflowGraph(
        id="default_retrieval_graph", name="Default retrieval", description=None, nodes=nodes, edges=edges
    )


class WorkflowService:
    """The service's in-memory store, call for call."""

    def __init__(self) -> None:
        graph = default_graph()
        self._graphs: dict[str, WorkflowGraph] = {graph.id: graph}
        self._runs: dict[str, WorkflowRun] = {}
        self._run_node_states: dict[str, dict[str, WorkflowNodeState]] = {}

    def list_graphs(self) -> list[WorkflowGraph]:
        return list(self._graphs.values())

    def get_graph(self, workflow_id: str) -> WorkflowGraph | None:
        return self._graphs.get(workflow_id)

    def list_runs(self) -> list[WorkflowRun]:
        return list(self._runs.values())

    def get_run(self, run_id: str) -> WorkflowRun | None:
        return self._runs.get(run_id)

    def create_run(self, workflow_id: str) -> WorkflowRun | None:
        graph = self._graphs.get(workflow_id)
        if graph is None:
            return None
        run = WorkflowRun(
            id=f"run_{len(self._runs) + 1}",
            workflow_id=workflow_id,
            status=WorkflowRunStatus.PENDING,
            started_at=datetime.utcnow(),
            last_message="Run created (pending).",
        )
        self._runs[run.id] = run
        self._run_node_states[run.id] = {
            node.id: WorkflowNodeState(node_id=node.id, status=WorkflowNodeStatus.IDLE, progress=0.0)
            for node in graph.nodes
        }
        return run

    def update_run_status(
        self,
        run_id: str,
        status: WorkflowRunStatus,
        last_message: str | None = None,
        finished: bool | None = None,
    ) -> WorkflowRun | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        run.status = status
        if last_message is not None:
            run.last_message = last_message
        if finished:
            run.finished_at = datetime.utcnow()
        return run

    def set_node_state(
        self, run_id: str, node_id: str, *, status: WorkflowNodeStatus, progress: float
    ) -> WorkflowNodeState | None:
        states = self._run_node_states.get(run_id)
        if states is None:
            return None
        state = WorkflowNodeState(node_id=node_id, status=status, progress=progress)
        states[node_id] = state
        return state

    def get_node_state(self, run_id: str, node_id: str) -> WorkflowNodeState | None:
        return self._run_node_states.get(run_id, {}).get(node_id)

    def list_node_states(self, run_id: str) -> list[WorkflowNodeState]:
        return list(self._run_node_states.get(run_id, {}).values())

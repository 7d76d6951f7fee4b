"""workflow_db: durable, project-scoped storage for workflow graphs, runs and node states.

    from workflow_db import connect, WorkflowStore
    db = connect("sqlite:///workflow.db")      # or postgresql://...
    store = WorkflowStore(db)

Migrations live in :mod:`workflow_db.migrate`, the importer of the old
in-memory data in :mod:`workflow_db.importer`.
"""

__version__ = "0.2.0"

from .dialects import Database, connect
from .errors import (
    ConflictError,
    DatabaseUnavailableError,
    GraphInUseError,
    IntegrityError,
    MigrationError,
    ValidationError,
    WorkflowDBError,
)
from .lifecycle import RunSummary
from .models import (
    Project,
    WorkflowGraph,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
)
from .store import WorkflowStore

__all__ = [
    "ConflictError",
    "Database",
    "DatabaseUnavailableError",
    "GraphInUseError",
    "IntegrityError",
    "MigrationError",
    "Project",
    "RunSummary",
    "ValidationError",
    "WorkflowDBError",
    "WorkflowGraph",
    "WorkflowNodeState",
    "WorkflowNodeStatus",
    "WorkflowRun",
    "WorkflowRunStatus",
    "WorkflowStore",
    "connect",
]

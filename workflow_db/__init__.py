"""workflow_db: durable, project-scoped storage for workflow graphs, runs and node states.

    from workflow_db import connect, WorkflowStore
    db = connect("sqlite:///workflow.db")      # or postgresql://...
    store = WorkflowStore(db)

    from workflow_db import connect_async, AsyncWorkflowStore   # the same calls, as coroutines
    db = await connect_async("postgresql://...")
    store = AsyncWorkflowStore(db)

Migrations live in :mod:`workflow_db.migrate`, the importer of the old
in-memory data in :mod:`workflow_db.importer`.
"""

__version__ = "0.7.0"

from .changes import Change
from .dialects import AsyncDatabase, Database, connect, connect_async
from .errors import (
    ConflictError,
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    GraphInUseError,
    IntegrityError,
    MigrationError,
    ValidationError,
    WorkflowDBError,
)
from .models import (
    Project,
    WorkflowGraph,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
)
from .rows import RunSummary
from .store import WorkflowStore
from .store_async import AsyncWorkflowStore

__all__ = [
    "AsyncDatabase",
    "AsyncWorkflowStore",
    "Change",
    "ConflictError",
    "Database",
    "DatabaseNotFoundError",
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
    "connect_async",
]

"""LangGraph checkpoint savers on the database that holds the runs (extra ``workflow_db[langgraph]``).

``WorkflowCheckpointSaver(db, *, project_id=None)`` takes a :class:`~workflow_db.Database`,
``AsyncWorkflowCheckpointSaver(db, *, project_id=None)`` an :class:`~workflow_db.AsyncDatabase`;
both are ``langgraph.checkpoint.base.BaseCheckpointSaver`` subclasses. Pass one as a graph's
``checkpointer`` with ``thread_id`` = the run id, and the graph resumes from the database after a
restart (``graph.ainvoke(None, config)``).
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - the test matrix has the extra; test_langgraph checks this
    raise ImportError(
        'workflow_db.langgraph needs LangGraph\'s checkpoint package: pip install "workflow_db[langgraph]"'
    ) from exc

from .checkpoint_saver import WorkflowCheckpointSaver
from .checkpoint_saver_async import AsyncWorkflowCheckpointSaver

__all__ = ["AsyncWorkflowCheckpointSaver", "WorkflowCheckpointSaver"]

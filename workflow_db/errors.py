"""The exceptions raised by workflow_db; no driver exception leaves the package."""

from __future__ import annotations


class WorkflowDBError(Exception):
    """Base class of every error raised by workflow_db."""


class ValidationError(WorkflowDBError, ValueError):
    """Bad input: the message names the field and what is allowed."""


class IntegrityError(WorkflowDBError):
    """A foreign key or another constraint refused the write."""


class ConflictError(WorkflowDBError):
    """An ``expected_version`` / ``expected_status`` / stored value did not match."""


class GraphInUseError(ConflictError):
    """A graph that still has runs was deleted without ``cascade=True``."""


class DatabaseUnavailableError(WorkflowDBError):
    """The database cannot be reached, or the connection broke mid-call."""


class DatabaseNotFoundError(DatabaseUnavailableError):
    """A SQLite file that does not exist, opened with ``connect(..., create=False)``."""


class MigrationError(WorkflowDBError):
    """A migration failed (nothing of it stays applied) or an applied file changed."""

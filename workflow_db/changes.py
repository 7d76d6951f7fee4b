"""The change feed's pure half: :class:`Change` records, their parameters, and the watchers' window.

Nothing here touches a connection. :mod:`workflow_db.feed_async` (and the
generated :mod:`workflow_db.feed`) reads the feed and waits for it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from . import queries as q
from .dialects.base import Dialect, DialectSQL, Row
from .errors import ValidationError
from .models import MAX_INTEGER, WorkflowNodeState, WorkflowRun, check_count, check_key, shown
from .rows import RUN_WIDTH, node_state_from_row, run_from_row

DEFAULT_CHANGE_PAGE = 1000
"""``list_changes``' default ``limit``, and the page watchers fetch."""
WINDOW_SIZE = 4096
"""How many of the newest changes a database keeps in memory for its watchers."""
FETCH_GAP = 0.025
"""Under a stream of changes, one process's watchers of a database fetch once per this many seconds..."""
FETCH_BURST = 4
"""...after a burst of this many fetches at once (so a change after a quiet spell is fetched at once)."""

_FIRST_NODE_COLUMN = 4 + RUN_WIDTH


@dataclass(frozen=True)
class Change:
    """A run or node state that changed, as it is now, at position ``seq`` of the feed."""

    seq: int
    """Grows with commit order; pass the last one seen as ``after=`` to resume."""
    kind: Literal["run", "node_state"]
    project_id: str
    run_id: str
    node_id: str | None
    """The node's id for a ``"node_state"`` change, else None."""
    run: WorkflowRun | None
    """The run as it is now, for a ``"run"`` change; else None."""
    node_state: WorkflowNodeState | None
    """The node state as it is now, for a ``"node_state"`` change; else None."""

    @property
    def record(self) -> WorkflowRun | WorkflowNodeState:
        """What changed, as it is now: ``run`` or ``node_state``, whichever this change is of (never None)."""
        record = self.run if self.run is not None else self.node_state
        assert record is not None  # every change holds one of the two
        return record


def change_from_row(row: Row) -> Change:
    """The change of a ``queries.list_changes`` row."""
    seq, project_id, run_id, node_id = row[0], row[1], row[2], row[3]
    if node_id == "":
        return Change(seq, "run", project_id, run_id, None, run_from_row(row[4:_FIRST_NODE_COLUMN]), None)
    node_state = node_state_from_row(row[_FIRST_NODE_COLUMN:])
    return Change(seq, "node_state", project_id, run_id, node_id, None, node_state)


def check_after(value: object) -> int:
    """A feed position: None (the start, 0) or an integer >= 0 (a ``seq`` seen before)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
        raise ValidationError(
            f"after: expected None or the seq of a change (an integer >= 0), got {shown(value)}"
        )
    return value


def check_timeout(value: object) -> float | None:
    """``watch``'s ``timeout``: None (wait for ever) or a number of seconds > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_INTEGER:
        raise ValidationError(
            f"timeout: expected None or a number of seconds > 0 (at most {MAX_INTEGER}), got {shown(value)}"
        )
    return float(value)


@dataclass(frozen=True)
class ChangeQuery:
    """A checked ``list_changes`` call: its statement and parameters."""

    sql: DialectSQL
    params: dict[str, Any]
    project_id: str | None
    run_id: str | None

    @staticmethod
    def of(after: object, project_id: object, run_id: object, limit: object) -> ChangeQuery:
        """Check the arguments (ValidationError naming the one refused)."""
        project = None if project_id is None else check_key("project_id", project_id)
        run = None if run_id is None else check_key("run_id", run_id)
        params = {
            "after": check_after(after),
            "project_id": project,
            "run_id": run,
            "limit": check_count("limit", limit),
        }
        return ChangeQuery(q.list_changes(project is not None, run is not None), params, project, run)

    def after(self, seq: int) -> ChangeQuery:
        """The same query resuming after ``seq``."""
        return ChangeQuery(self.sql, {**self.params, "after": seq}, self.project_id, self.run_id)


class ChangeWindow:
    """The newest changes of one database, shared by all its watchers in this process.

    One watcher at a time fetches what is new (``add``); every watcher then
    picks its own from memory (``since``), so a hundred watchers cost the
    database what one costs. Each object is kept once, at its latest change,
    so the window holds every change after ``start`` up to ``head``.
    """

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._changes: OrderedDict[tuple[str, str | None], Change] = OrderedDict()
        self.start: int | None = None
        """Every change after this seq is here (None: not read yet)."""
        self.head = 0
        """The newest seq fetched."""
        self.fetched_generation = -1
        """The database's change generation read before the last fetch started."""
        self.fetched_at = -1e9
        """When the last fetch started (``time.monotonic()``)."""
        self._fetch_tokens = float(FETCH_BURST)
        self._tokens_at = time.monotonic()

    def begin(self, head: int) -> None:
        """Start empty at ``head``, the newest change numbered so far."""
        with self._lock:
            if self.start is None:
                self.start = self.head = head

    def add(self, changes: list[Change]) -> None:
        """Take in a page fetched after ``head``, oldest first."""
        with self._lock:
            for change in changes:
                key = (change.run_id, change.node_id)
                self._changes.pop(key, None)
                self._changes[key] = change
            if changes:
                self.head = max(self.head, changes[-1].seq)
            while len(self._changes) > self._size:
                _, dropped = self._changes.popitem(last=False)
                self.start = dropped.seq

    def noted_fetch(self, generation: int, started_at: float) -> None:
        """Record a fetch that began at ``started_at`` with the database at ``generation``."""
        self.fetched_generation = generation
        self.fetched_at = started_at

    def fetch_delay(self) -> float:
        """Seconds to wait before the next fetch: a bucket of FETCH_BURST fetches, one more each FETCH_GAP."""
        now = time.monotonic()
        self._fetch_tokens = min(FETCH_BURST, self._fetch_tokens + (now - self._tokens_at) / FETCH_GAP) - 1
        self._tokens_at = now
        return max(0.0, -self._fetch_tokens * FETCH_GAP)

    def is_fresh(self, generation: int, max_age: float) -> bool:
        """Whether a fetch began after ``generation`` was reached, at most ``max_age`` seconds ago."""
        return self.fetched_generation >= generation and time.monotonic() - self.fetched_at < max_age

    def since(
        self, cursor: int, project_id: str | None, run_id: str | None
    ) -> tuple[list[Change], int] | None:
        """The changes after ``cursor`` that match, oldest first, and the cursor to go on from
        (``head``); None if ``cursor`` is before ``start``."""
        with self._lock:
            if self.start is None or cursor < self.start:
                return None
            found = []
            for change in reversed(self._changes.values()):
                if change.seq <= cursor:
                    break
                if (project_id is None or change.project_id == project_id) and (
                    run_id is None or change.run_id == run_id
                ):
                    found.append(change)
            found.reverse()
            return found, max(cursor, self.head)


_WINDOWS: weakref.WeakKeyDictionary[Dialect, ChangeWindow] = weakref.WeakKeyDictionary()
_WINDOWS_LOCK = threading.Lock()


def change_window(db: Dialect) -> ChangeWindow:
    """The window this process's watchers of ``db`` share (made at the first call, gone with ``db``)."""
    window = _WINDOWS.get(db)
    if window is None:
        with _WINDOWS_LOCK:
            window = _WINDOWS.setdefault(db, ChangeWindow())
    return window

# Generated from feed_async.py by scripts/async_to_sync.py: edit that file, then run the script.
"""The change feed of :class:`~workflow_db.store.WorkflowStore`: ``list_changes`` and ``watch``.

``list_changes`` reads the feed (numbering committed changes first on
PostgreSQL, see :mod:`workflow_db.queries`). ``watch`` waits on the
database's change signal (a write of this process, NOTIFY from another, or
the poll interval), and this process's watchers of one database share one
fetch: the first to wake reads what is new into the database's
:class:`~workflow_db.changes.ChangeWindow`, every watcher picks its own from
there. A watcher behind the window reads the feed itself until it catches up.
``feed.py`` is generated from this module by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from . import queries as q
from .changes import (
    DEFAULT_CHANGE_PAGE,
    Change,
    ChangeQuery,
    change_from_row,
    change_window,
    check_timeout,
)
from .dialects import Database
from .dialects.base import fetch_all, fetch_none, fetch_one
from .errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)


class ChangeFeed:
    """``list_changes`` and ``watch``, mixed into the store."""

    db: Database

    def list_changes(
        self,
        after: int | None = None,
        *,
        project_id: str | None = None,
        run_id: str | None = None,
        limit: int = DEFAULT_CHANGE_PAGE,
    ) -> list[Change]:
        """The changes after seq ``after`` (None: from the start), oldest first, at most ``limit``.

        Each changed run and node state comes once, as it is now. Pass the
        last ``seq`` seen as ``after`` to resume: no change is ever skipped,
        whatever order transactions commit in. ``project_id`` and ``run_id``
        keep only that project's, that run's changes. A deleted run and its
        node states are not in the feed.
        """
        return self._read_changes(ChangeQuery.of(after, project_id, run_id, limit))

    def watch(
        self,
        after: int | None = None,
        *,
        project_id: str | None = None,
        run_id: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Change]:
        """``list_changes``, then each change as it commits, from any process; for ever, or
        until ``timeout`` seconds pass without one.

        While the database cannot be reached it keeps trying (logging a
        warning) and resumes from the last change it gave: nothing is missed.
        Closing the database ends it.
        """
        query = ChangeQuery.of(after, project_id, run_id, DEFAULT_CHANGE_PAGE)
        quiet_limit = check_timeout(timeout)
        db = self.db
        db.listen_for_changes()
        cursor = query.params["after"]
        last_change = time.monotonic()
        failing = False
        while not db.closed:
            generation = db.changes.generation
            try:
                changes, cursor = self._changes_after(query, cursor, generation)
            except DatabaseUnavailableError as exc:
                if db.closed:
                    return
                if not failing:
                    logger.warning("watching changes: %s; retrying every %g s", exc, db.poll_interval)
                failing, changes = True, []
            else:
                if failing:
                    logger.warning(
                        "watching changes: the database answers again; resuming after seq %d", cursor
                    )
                failing = False
            for change in changes:
                yield change
            if changes:
                last_change = time.monotonic()
                continue
            wait = db.poll_interval if failing else db.change_poll_interval
            if quiet_limit is not None:
                left = last_change + quiet_limit - time.monotonic()
                if left <= 0:
                    return
                wait = min(wait, left)
            db.changes.wait(generation, wait)

    def _read_changes(self, query: ChangeQuery) -> list[Change]:
        db = self.db
        if not db.changes_numbered_on_read:
            rows = db.read(query.sql, query.params, fetch_all)
        else:
            with db.writing(quiet=True) as session:  # pipelined: one round trip, and the commit
                session.execute(q.LOCK_CHANGE_SEQUENCER, (), fetch_none)
                session.execute(q.SEQUENCE_CHANGES, (), fetch_none)
                rows = session.all(query.sql, query.params)
        return [change_from_row(row) for row in rows]

    def _changes_after(self, query: ChangeQuery, cursor: int, generation: int) -> tuple[list[Change], int]:
        """What ``query`` holds after ``cursor``, and the cursor to continue from."""
        window = change_window(self.db)
        if not window.is_fresh(generation, self.db.change_poll_interval):
            self._refresh_window(generation)
        found = window.since(cursor, query.project_id, query.run_id)
        if found is not None:
            return found
        # Behind the window: a page of the feed itself. A short page reached
        # what was numbered when it was read, which includes the window's head.
        head = window.head
        changes = self._read_changes(query.after(cursor))
        last = changes[-1].seq if changes else cursor
        return changes, last if len(changes) == DEFAULT_CHANGE_PAGE else max(last, head)

    def _refresh_window(self, generation: int) -> None:
        """Read what is new into the window, unless another watcher did since ``generation``."""
        db = self.db
        window, signal = change_window(db), db.changes
        with signal.fetching:
            if window.is_fresh(generation, db.change_poll_interval):
                return
            delay = window.fetch_delay()
            if delay > 0:
                signal.pause(delay)
            started = signal.generation, time.monotonic()
            if window.start is None:
                row = db.read(q.CHANGE_HEAD, (), fetch_one)
                window.begin(int(row[0]) if row else 0)
            else:
                while True:
                    changes = self._read_changes(ChangeQuery.of(window.head, None, None, DEFAULT_CHANGE_PAGE))
                    window.add(changes)
                    if len(changes) < DEFAULT_CHANGE_PAGE:
                        break
            window.noted_fetch(*started)

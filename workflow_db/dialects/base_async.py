"""The asyncio interface both dialects satisfy: :class:`AsyncDatabase` and :class:`AsyncSession`.

:class:`~workflow_db.store_async.AsyncWorkflowStore` speaks only to these, as
:class:`~workflow_db.store.WorkflowStore` speaks to :class:`~.base.Database`:
the same calls (``read``, ``write``, ``writing``, ``reading``, ``encode_*``),
as coroutines. A transaction belongs to the task that opened it: its session
lives in a context variable together with that task, so a task started inside
the block (which copies the context) runs outside it, on its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Self

from .base import (
    DEFAULT_POLL_INTERVAL,
    SQL,
    Dialect,
    Fetch,
    Params,
    Row,
    T,
    fetch_all,
    fetch_one,
    fetch_rowcount,
)


class AsyncSession(ABC):
    """One connection lent to one task for one unit of work."""

    deadline: float = math.inf
    """When the current call must be over (``time.monotonic()``), as in :class:`.base.Session`."""

    @abstractmethod
    async def execute(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """Run ``sql`` and return ``fetch(cursor)``; driver errors come out translated."""

    async def all(self, sql: SQL, params: Params = ()) -> list[Row]:
        """Run ``sql`` and return every row."""
        return await self.execute(sql, params, fetch_all)

    async def one(self, sql: SQL, params: Params = ()) -> Row | None:
        """Run ``sql`` and return its first row, or None."""
        return await self.execute(sql, params, fetch_one)

    async def run(self, sql: SQL, params: Params = ()) -> int:
        """Run ``sql`` and return the number of rows it changed."""
        return await self.execute(sql, params, fetch_rowcount)

    @abstractmethod
    def savepoint(self) -> AbstractAsyncContextManager[Self]:
        """A nested unit of work: on error only its own changes are undone."""


class AsyncChangeSignal:
    """:class:`~.base.ChangeSignal` for asyncio: wakes one database's watchers in this process."""

    def __init__(self) -> None:
        self.generation = 0
        self.fetching = asyncio.Lock()
        """Held by the one watcher that fetches for all."""
        self._changed: asyncio.Event | None = None  # made by the first waiter, on its loop

    def bump(self) -> None:
        """A change may have committed: wake every waiting watcher."""
        self.generation += 1
        changed = self._changed
        if changed is not None:
            self._changed = None
            changed.set()

    async def wait(self, generation: int, timeout: float) -> None:
        """Return once the generation is no longer ``generation``, or after ``timeout`` seconds."""
        if self.generation != generation:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives as the event is set, and the watcher would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a fetcher keeping its distance from the previous fetch)."""
        await asyncio.sleep(seconds)


class AsyncDatabase(Dialect):
    """A connected database for asyncio: the object :func:`workflow_db.connect_async` returns."""

    schema_version: int = 0
    """The newest migration applied when the database was opened (0: none)."""

    def __init__(
        self, timeout: float, display_url: str, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        super().__init__(timeout, display_url, poll_interval)
        self.changes = AsyncChangeSignal()
        """Moves when a change may have committed: what watchers wait on."""
        self._transaction: ContextVar[tuple[asyncio.Task[Any] | None, AsyncSession] | None] = ContextVar(
            f"workflow_db_transaction_{id(self)}", default=None
        )

    # -- public ---------------------------------------------------------------------

    async def close(self) -> None:
        """Close every connection (ending every watcher); the object cannot be used afterwards.

        Closing it again does nothing.
        """
        if self.closed:
            return
        self.closed = True
        self.wake_watchers()
        await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- one statement: the store's hot paths --------------------------------------------

    def _session(self) -> AsyncSession | None:
        """The session of the transaction the current task opened, if any."""
        current = self._transaction.get()
        if current is None or current[0] is not asyncio.current_task():
            return None
        return current[1]

    async def read(self, sql: SQL, params: Params, fetch: Fetch[T], *, replica: bool = False) -> T:
        """Run one reading statement (inside the task's transaction: in it).

        ``replica``: outside a transaction it may be served by a read replica that has replayed
        every commit of this task (read-your-writes), if the database has replicas.
        """
        session = self._session()
        if session is not None:
            session.deadline = time.monotonic() + self.timeout  # each call of a transaction has its own
            return await session.execute(sql, params, fetch)
        if replica and self.replicas is not None:
            return await self._read_replica(sql, params, fetch)
        return await self._read(sql, params, fetch)

    async def write(
        self, sql: SQL, params: Params, fetch: Fetch[T], *, refusable: bool = False, quiet: bool = False
    ) -> T:
        """Run one writing statement atomically; inside the task's transaction it joins it, in a
        savepoint of its own when the server may refuse it (see :meth:`.base.Database.write`)."""
        session = self._session()
        if session is not None:
            session.deadline = time.monotonic() + self.timeout
            if not refusable:
                return await session.execute(sql, params, fetch)
            async with session.savepoint():
                return await session.execute(sql, params, fetch)
        result = await self._write(sql, params, fetch)
        if not quiet:
            self.committed()
        return result

    # -- units of several statements -------------------------------------------------------

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; inside the task's transaction, that transaction's session."""
        current = self._session()
        if current is not None:
            current.deadline = time.monotonic() + self.timeout
            yield current
            return
        async with self._read_session() as session:
            yield session

    @asynccontextmanager
    async def writing(self, *, quiet: bool = False) -> AsyncIterator[AsyncSession]:
        """An atomic unit of work; inside another one of the same task it joins it as a savepoint.

        Its commit wakes this process's watchers unless ``quiet`` (the feed's own numbering).
        """
        current = self._session()
        if current is not None:
            current.deadline = time.monotonic() + self.timeout
            async with current.savepoint():
                yield current
            return
        async with self._write_session() as session:
            token = self._transaction.set((asyncio.current_task(), session))
            try:
                yield session
            finally:
                self._transaction.reset(token)
        if not quiet:
            self.committed()

    def wake_watchers(self) -> None:
        """Wake this process's watchers of the feed: a change may have committed."""
        self.changes.bump()

    async def listen_for_changes(self) -> None:
        """Make sure something outside this process can wake its watchers (PostgreSQL: LISTEN)."""

    # -- what each dialect provides ----------------------------------------------------------

    @abstractmethod
    async def _read(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """One reading statement outside any transaction."""

    @abstractmethod
    async def _write(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """One writing statement, atomic on its own, outside any transaction."""

    async def _read_replica(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """One reading statement outside any transaction, on a replica if one may serve it."""
        return await self._read(sql, params, fetch)

    @abstractmethod
    def _read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session for reads outside any transaction."""

    @abstractmethod
    def _write_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session inside a new top-level write transaction."""

    async def _read_schema_version(self) -> None:
        """Called once by the dialect when it opens: note the newest migration applied."""
        from ..queries import MIGRATIONS_TABLE_EXISTS, NEWEST_MIGRATION

        async with self.reading() as session:
            if await session.one(MIGRATIONS_TABLE_EXISTS) is not None:
                row = await session.one(NEWEST_MIGRATION)
                self.schema_version = int(row[0]) if row and row[0] is not None else 0

    @abstractmethod
    async def _close(self) -> None:
        """Close every connection."""

"""The SQLite dialect for asyncio: the sync adapter's connections, driven from worker threads.

The stdlib ``sqlite3`` module blocks, so nothing of it runs on the event loop:

* a read runs on one of a few reader threads, on the sync adapter's
  ``query_only`` reader connections (WAL: never waiting for the writer);
* a write outside a transaction runs on the one writer thread, behind the
  sync adapter's writer lock (so threads and tasks of one process share it);
* a transaction gets a thread of its own for its whole life: the writer lock
  is taken by that thread and every statement of the block runs there, in
  order. Its end (COMMIT or ROLLBACK, then the lock's release) is queued on
  that thread and runs even when the task is cancelled while it waits.

A statement whose task is cancelled before its thread starts it never runs;
one already running finishes (a single statement is atomic) and its result is
dropped. No statement ever runs on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar

from ..errors import WorkflowDBError
from .base import SQL, Fetch, Params, Session, T
from .base_async import AsyncDatabase, AsyncSession
from .sqlite import SQLiteDatabase

READER_THREADS = 4
"""Reads that run at once (sqlite3 lets go of the GIL while SQLite works)."""

R = TypeVar("R")


class _Thread:
    """One thread that runs the steps of one unit of work, in the order they were queued."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="workflow_db-sqlite")

    def queue(self, function: Callable[..., R], *args: Any) -> concurrent.futures.Future[R]:
        """Queue ``function(*args)``; it runs whatever happens to the caller."""
        return self._executor.submit(function, *args)

    async def call(self, function: Callable[..., R], *args: Any) -> R:
        """Run ``function(*args)`` there; cancelled before it starts, it never runs."""
        return await asyncio.wrap_future(self.queue(function, *args))

    async def finish(self, function: Callable[..., R], *args: Any) -> R:
        """Run ``function(*args)`` there, to the end even if the caller is cancelled meanwhile."""
        return await asyncio.shield(asyncio.wrap_future(self.queue(function, *args)))

    def close(self) -> None:
        """Stop the thread once what is queued has run."""
        self._executor.shutdown(wait=False)


class AsyncSQLiteSession(AsyncSession):
    """A sync SQLite session whose statements run on its unit of work's thread."""

    def __init__(self, session: Session, thread: _Thread) -> None:
        self._session = session
        self._thread = thread

    async def execute(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """Run ``sql`` on the session's thread and return ``fetch(cursor)``."""
        return await self._thread.call(self._session.execute, sql, params, fetch)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[Self]:
        """A SAVEPOINT of the session's transaction, entered and left on its thread."""
        async with _on_thread(self._thread, self._session.savepoint()):
            yield self


@asynccontextmanager
async def _on_thread(thread: _Thread, block: AbstractContextManager[R]) -> AsyncIterator[R]:
    """Enter and leave the sync context manager ``block`` on ``thread``.

    Once entered it is always left, on the thread, after every step queued
    before: also when the task is cancelled while entering or leaving.
    """
    entering = thread.queue(block.__enter__)
    try:
        value = await asyncio.shield(asyncio.wrap_future(entering))
    except BaseException as exc:
        thread.queue(_leave_if_entered, block, entering, exc)
        raise
    try:
        yield value
    except BaseException as exc:
        await thread.finish(block.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await thread.finish(block.__exit__, None, None, None)


def _leave_if_entered(
    block: AbstractContextManager[Any], entering: concurrent.futures.Future[Any], exc: BaseException
) -> None:
    if entering.exception() is None:
        block.__exit__(type(exc), exc, exc.__traceback__)


class AsyncSQLiteDatabase(AsyncDatabase):
    """A SQLite database for asyncio; open it with :meth:`open`."""

    dialect: ClassVar[str] = "sqlite"
    driver_errors = (sqlite3.Error,)

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(options.get("timeout", 30.0), f"sqlite:///{path}")
        self._path = path
        self._options = options
        self._sync: SQLiteDatabase | None = None
        self._readers = concurrent.futures.ThreadPoolExecutor(
            READER_THREADS, thread_name_prefix="workflow_db-sqlite-read"
        )
        self._writer = _Thread()
        self._idle_threads: list[_Thread] = []

    async def open(self) -> Self:
        """Open the file (waiting at most ``timeout`` for its lock), read the schema version."""
        self._sync = await self._writer.call(lambda: SQLiteDatabase(self._path, **self._options))
        self.display_url = self._sync.display_url
        await self._read_schema_version()
        return self

    @property
    def sync(self) -> SQLiteDatabase:
        """The sync adapter whose connections this one drives."""
        if self._sync is None:
            raise WorkflowDBError("the SQLite database is not open: await connect_async(url) first")
        return self._sync

    # -- statements ------------------------------------------------------------------

    async def _read(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        future = self._readers.submit(self.sync._read, sql, params, fetch)
        return await asyncio.wrap_future(future)

    async def _write(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        return await self._writer.call(self.sync._write, sql, params, fetch)

    @asynccontextmanager
    async def _read_session(self) -> AsyncIterator[AsyncSession]:
        async with self._session_on_thread(self.sync._read_session()) as session:
            yield session

    @asynccontextmanager
    async def _write_session(self) -> AsyncIterator[AsyncSession]:
        async with self._session_on_thread(self.sync._write_session()) as session:
            yield session

    @asynccontextmanager
    async def _session_on_thread(self, block: AbstractContextManager[Session]) -> AsyncIterator[AsyncSession]:
        """A sync session opened, used and closed on a thread of its own (taken from the idle ones)."""
        try:
            thread = self._idle_threads.pop()
        except IndexError:
            thread = _Thread()
        try:
            async with _on_thread(thread, block) as session:
                yield AsyncSQLiteSession(session, thread)
        finally:
            thread.queue(self._idle_threads.append, thread)

    # -- types, SQL and errors: the sync adapter's ----------------------------------------

    def _convert(self, sql: str) -> str:
        return sql  # sqlite3 speaks :name natively

    def encode_time(self, value: datetime) -> str:
        """Fixed-width ISO-8601 UTC text."""
        return self.sync.encode_time(value)

    def encode_json(self, text: str) -> str:
        """SQLite stores JSON as TEXT: the text as it is."""
        return text

    def translate(self, exc: BaseException) -> WorkflowDBError:
        """sqlite3 errors as workflow_db errors, as the sync adapter translates them."""
        return self.sync.translate(exc)

    async def _close(self) -> None:
        threads = [self._writer, *self._idle_threads]
        if self._sync is not None:
            await self._writer.finish(self._sync.close)
        for thread in threads:
            thread.close()
        self._readers.shutdown(wait=False)

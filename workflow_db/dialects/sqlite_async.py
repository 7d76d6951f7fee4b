"""The SQLite dialect for asyncio: the sync adapter's connections, driven from worker threads.

The stdlib ``sqlite3`` module blocks, so nothing of it runs on the event loop:

* a read runs on the reader thread, on the sync adapter's ``query_only``
  reader connections (WAL: never waiting for the writer);
* a write outside a transaction runs on the one writer thread, behind the
  sync adapter's writer lock (so threads and tasks of one process share it);
* a transaction gets a thread of its own for its whole life (at most
  :data:`TRANSACTION_THREADS` at once; more transactions wait for one, at
  most ``timeout``): the writer lock is taken by that thread and every
  statement of the block runs there, in order. Its end (COMMIT or
  ROLLBACK, then the lock's release) is queued on that thread and runs even
  when the task is cancelled while it waits.

A statement whose task is cancelled before its thread starts it never runs;
one already running finishes (a single statement is atomic) and its result is
dropped. No statement ever runs on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar, Self, TypeVar

from ..errors import DatabaseUnavailableError, WorkflowDBError
from .base import DEFAULT_POLL_INTERVAL, SQL, Fetch, Params, Session, T
from .base_async import AsyncDatabase, AsyncSession
from .sqlite import SQLiteDatabase

logger = logging.getLogger(__name__)

READER_THREADS = 1
"""Threads running reads outside transactions. One: on two cores it served 1.3-1.5x the reads of
two threads with a third of the event-loop lag (scripts/bench_async.py), as the GIL, not SQLite,
is what they wait for. WAL readers never wait for the writer or a transaction."""

TRANSACTION_THREADS = 8
"""Transactions holding a thread at once. They take the one writer lock in turn anyway: more
threads would only wait for it; the tasks beyond these wait on the loop, without a thread."""

R = TypeVar("R")


class _Workers:
    """Threads that run queued calls for the event loop, each call's result handed back to it.

    With one thread, calls run in the order they were queued: the steps of
    one unit of work. Lighter than ``run_in_executor``: one queue put, and one
    ``call_soon_threadsafe`` to hand the outcome back.
    """

    def __init__(self, threads: int = 1) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = threads
        self._closed = False
        for _ in range(threads):
            threading.Thread(target=_work, args=(self._jobs,), name="workflow_db-sqlite", daemon=True).start()

    def submit(self, function: Callable[..., R], *args: Any, always: bool = False) -> asyncio.Future[R]:
        """Queue ``function(*args)``; unless ``always``, a future cancelled before it starts skips it.

        Once the threads are closed nothing runs any more: DatabaseUnavailableError at once, not a
        call queued behind the threads' end that nobody would ever answer (a watcher that was
        waiting for its turn to fetch when the database closed)."""
        if self._closed:
            raise DatabaseUnavailableError("the SQLite database is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, always, function, args))
        return future

    async def call(self, function: Callable[..., R], *args: Any) -> R:
        """Run ``function(*args)`` there; cancelled before it starts, it never runs."""
        return await self.submit(function, *args)

    async def finish(self, function: Callable[..., R], *args: Any) -> R:
        """Run ``function(*args)`` there, to the end even if the caller is cancelled meanwhile."""
        future = self.submit(function, *args, always=True)
        future.add_done_callback(_retrieved)
        return await asyncio.shield(future)

    def queue(self, function: Callable[..., object], *args: Any) -> None:
        """Run ``function(*args)`` there, whatever happens to the caller; nobody waits for it (once
        the threads are closed: not at all)."""
        if not self._closed:
            self._jobs.put((None, True, function, args))

    def close(self) -> None:
        """Stop the threads once what is queued has run; later calls are refused."""
        self._closed = True
        for _ in range(self._threads):
            self._jobs.put(None)


_Job = tuple["asyncio.Future[Any] | None", bool, Callable[..., Any], tuple[Any, ...]]


def _work(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """A worker thread's life: run jobs until the None that stops it."""
    while (job := jobs.get()) is not None:
        future, always, function, args = job
        if future is not None and not always and future.cancelled():
            continue
        try:
            result = function(*args)
        except BaseException as exc:
            if future is None:
                logger.warning("workflow_db: a SQLite clean-up step failed: %s", exc)
            else:
                future.get_loop().call_soon_threadsafe(_set_exception, future, exc)
            continue
        if future is not None:
            future.get_loop().call_soon_threadsafe(_set_result, future, result)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a shielded future's exception as seen: its caller may have been cancelled meanwhile."""
    if not future.cancelled():
        future.exception()


class AsyncSQLiteSession(AsyncSession):
    """A sync SQLite session whose statements run on its unit of work's thread."""

    def __init__(self, session: Session, thread: _Workers) -> None:
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
async def _on_thread(thread: _Workers, block: AbstractContextManager[R]) -> AsyncIterator[R]:
    """Enter and leave the sync context manager ``block`` on ``thread`` (one thread).

    Once entered it is always left, on the thread, after every step queued
    before: also when the task is cancelled while entering or leaving.
    """
    entered: list[bool] = []

    def enter() -> R:
        value = block.__enter__()
        entered.append(True)
        return value

    try:
        value = await thread.finish(enter)
    except BaseException as exc:
        thread.queue(_leave_if_entered, block, entered, exc)
        raise
    try:
        yield value
    except BaseException as exc:
        await thread.finish(block.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await thread.finish(block.__exit__, None, None, None)


def _done_with(idle: list[_Workers], thread: _Workers, release: Callable[[], object]) -> None:
    """On ``thread``, after its last step: back to the idle threads, and its slot freed."""
    idle.append(thread)
    release()


def _release_on(loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore) -> None:
    """Free a transaction thread's slot on ``loop`` (from that thread).

    The loop may have closed meanwhile (``asyncio.run`` ended right after the
    transaction): then nobody waits for the slot, and a clean shutdown logs nothing.
    """
    try:
        loop.call_soon_threadsafe(slots.release)
    except RuntimeError:
        logger.debug("a transaction thread finished after its event loop closed")


def _leave_if_entered(block: AbstractContextManager[Any], entered: list[bool], exc: BaseException) -> None:
    if entered:
        block.__exit__(type(exc), exc, exc.__traceback__)


class AsyncSQLiteDatabase(AsyncDatabase):
    """A SQLite database for asyncio; open it with :meth:`open`."""

    dialect: ClassVar[str] = "sqlite"
    driver_errors = (sqlite3.Error,)

    def __init__(self, path: str, **options: Any) -> None:
        super().__init__(
            options.get("timeout", 30.0),
            f"sqlite:///{path}",
            options.get("poll_interval", DEFAULT_POLL_INTERVAL),
        )
        self._path = path
        self._options = options
        self._sync: SQLiteDatabase | None = None
        self._readers = _Workers(READER_THREADS)
        self._writer = _Workers()
        self._idle_threads: list[_Workers] = []
        self._thread_slots = asyncio.Semaphore(TRANSACTION_THREADS)

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
        return await self._readers.call(self.sync._read, sql, params, fetch)

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
        try:  # asyncio.timeout: wait_for (3.11) can swallow a cancellation that comes with the slot
            async with asyncio.timeout(self.timeout):
                await self._thread_slots.acquire()
        except TimeoutError:
            raise DatabaseUnavailableError(
                f"sqlite database {self._path!r} is locked: {TRANSACTION_THREADS} transactions of this "
                f"process kept their threads past the timeout of {self.timeout:g} s"
            ) from None
        try:
            thread = self._idle_threads.pop()
        except IndexError:
            thread = _Workers()
        try:
            async with _on_thread(thread, block) as session:
                yield AsyncSQLiteSession(session, thread)
        finally:
            # Free once the thread has run every step queued on it, even a cancelled task's.
            release = functools.partial(_release_on, asyncio.get_running_loop(), self._thread_slots)
            thread.queue(_done_with, self._idle_threads, thread, release)

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
        self._readers.close()

"""The PostgreSQL dialect for asyncio: psycopg 3 behind a ``psycopg_pool.AsyncConnectionPool``.

The same login probe, connection check, loaders, SQL conversion and error
translation as :mod:`.postgresql` (its :class:`~.postgresql.PostgresDialect`);
only the waiting is asynchronous. A task cancelled during a statement makes
psycopg cancel it on the server and wait for the connection to be idle again,
so the pool gets it back clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Self, cast

import psycopg
import psycopg_pool

from ..errors import DatabaseUnavailableError, WorkflowDBError
from .base import SQL, Fetch, Params, T, fetch_all, fetch_none, fetch_one, fetch_rowcount
from .base_async import AsyncDatabase, AsyncSession
from .postgresql import (
    ANNOUNCE_GAP,
    ANNOUNCEMENT,
    LISTEN_CHANNEL,
    LISTEN_RETRY_SECONDS,
    LISTEN_WAKE_GAP,
    PostgresDialect,
    end_statement,
    queue_command,
)
from .replica_reads_async import AsyncReplicaReads
from .replicas import WAL_POSITION, lsn, position_in


async def _fetch_all(cursor: psycopg.AsyncCursor[Any]) -> Any:
    return await cursor.fetchall()


async def _fetch_one(cursor: psycopg.AsyncCursor[Any]) -> Any:
    return await cursor.fetchone()


async def _fetch_rowcount(cursor: psycopg.AsyncCursor[Any]) -> Any:
    return cursor.rowcount


async def _fetch_none(cursor: psycopg.AsyncCursor[Any]) -> Any:
    return None


_ASYNC_FETCH: dict[Callable[[Any], Any], Callable[[psycopg.AsyncCursor[Any]], Awaitable[Any]]] = {
    fetch_all: _fetch_all,
    fetch_one: _fetch_one,
    fetch_rowcount: _fetch_rowcount,
    fetch_none: _fetch_none,
}
"""The async cursor's way of doing what each of the store's fetch functions does."""


class AsyncPostgresSession(AsyncSession):
    """A session on one pooled async psycopg connection (autocommit mode).

    As in the sync dialect, a write transaction runs in pipeline mode: one
    round trip a call, each call undone alone when it fails.
    """

    def __init__(
        self,
        database: AsyncPostgresDatabase,
        connection: psycopg.AsyncConnection[Any],
        pipeline: psycopg.AsyncPipeline | None = None,
        deadline: float = math.inf,
    ) -> None:
        self.database = database
        self.connection = connection
        self.pipeline = pipeline
        self.deadline = deadline
        self._savepoints = 0

    async def execute(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """Run ``sql`` and return what ``fetch`` takes from its cursor; errors come out translated.

        Its lock waits and its wait for the answer end at the call's deadline, as in the sync dialect.
        """
        database, connection = self.database, self.connection
        text = database.prepare(sql)
        key = id(connection)
        try:
            database.watch(connection, self.deadline)
            cursor = await connection.execute(text, database.bounded(text, params, self.deadline))
            if fetch is fetch_rowcount and self.pipeline is not None:
                await self.pipeline.sync()
            return cast(T, await _ASYNC_FETCH[fetch](cursor))
        except database.driver_errors as exc:
            raise database.failed(exc, key) from exc
        finally:
            database.watchdog.unwatch(key)

    async def _send(self, statement: str) -> None:
        """Run a statement without placeholders; in a pipeline, only queue it (see :func:`queue_command`)."""
        with self.database.answered(self.connection):
            if self.pipeline is None:
                self.database.watch(self.connection, self.deadline)
                await self.connection.execute(statement)
            else:
                await self.connection.wait(queue_command(self.connection, statement))

    async def _synced(self) -> None:
        """After a failure: sync the pipeline (what it reports again is that failure), within the timeout."""
        assert self.pipeline is not None
        with contextlib.suppress(WorkflowDBError), self.database.answered(self.connection):
            self.database.watch(self.connection, time.monotonic() + self.database.timeout)
            await self.pipeline.sync()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[Self]:
        """A ``SAVEPOINT`` inside the task's transaction: on error only its own changes are undone."""
        self._savepoints += 1
        name = f"workflow_db_{self._savepoints}"
        try:
            await self._send(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                if self.pipeline is not None:  # a failed statement left it aborted until a sync point
                    await self._synced()
                await self._send(f"ROLLBACK TO SAVEPOINT {name}")
                await self._send(f"RELEASE SAVEPOINT {name}")
                raise
            await self._send(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1


@dataclass
class _Written:
    """The WAL position of the newest commit of a task (and of the tasks it started since)."""

    position: int = 0


class AsyncPostgresDatabase(PostgresDialect, AsyncReplicaReads, AsyncDatabase):
    """A PostgreSQL server reached through an asyncio connection pool; open it with :meth:`open`."""

    dialect: ClassVar[str] = "postgresql"

    def __init__(self, conninfo: str, **options: Any) -> None:
        super().__init__(conninfo, **options)
        self._listener: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._announcement = asyncio.Event()
        self._pool = self._async_pool = psycopg_pool.AsyncConnectionPool(
            conninfo, check=self._check, configure=self._configure_async, **self._pool_options
        )
        self.replicas = self._replica_set(
            psycopg_pool.AsyncConnectionPool, check=self._check, configure=self._configure_async
        )
        self._written: ContextVar[_Written | None] = ContextVar(
            f"workflow_db_written_{id(self)}", default=None
        )
        """The task's newest commit, as far as reads on replicas go. Made at the task's first read or
        write; the tasks it starts after that copy the context and share it (their commits count
        for it too)."""

    async def open(self) -> Self:
        """Wait for the server (at most ``timeout``), fill the pool, read the schema version."""
        await self._wait_for_server()
        try:
            await self._async_pool.open(wait=True, timeout=self.timeout)
        except psycopg_pool.PoolTimeout as exc:
            await self._async_pool.close(timeout=0)
            raise self._pool_timed_out() from exc
        try:
            await self._read_schema_version()
        except BaseException:
            await self._async_pool.close(timeout=0)
            raise
        for replica in self.replicas.replicas if self.replicas else ():
            await replica.pool.open(wait=False)  # a replica that is down is skipped, not waited for
        return self

    async def _wait_for_server(self) -> None:
        """Log in once before the pool does, so that the pool never retries a hopeless login."""
        deadline = time.monotonic() + self.timeout
        pause = 0.05
        while True:
            failure: DatabaseUnavailableError | ValueError | None = None
            try:
                connection = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_kwargs)
                await connection.close()
                return
            except psycopg.OperationalError as exc:
                failure = self._login_failure(exc, time.monotonic() + pause >= deadline)
                if isinstance(failure, DatabaseUnavailableError):
                    raise failure from exc
            if failure is not None:
                raise failure  # a ValueError, raised here: no driver error in its context
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    @classmethod
    async def _check(cls, connection: psycopg.AsyncConnection[Any]) -> None:
        """Check a pooled connection before lending it, without a round trip when idle and quiet."""
        if cls._needs_check(connection):
            await psycopg_pool.AsyncConnectionPool.check_connection(connection)

    @classmethod
    async def _configure_async(cls, connection: psycopg.AsyncConnection[Any]) -> None:
        cls._configure(connection)

    async def _read(self, sql: SQL, params: Params, fetch: Fetch[T], deadline: float | None = None) -> T:
        # The hot path: getconn/putconn directly (no context managers), one round trip.
        pool = self._async_pool
        if deadline is None:
            deadline = time.monotonic() + self.timeout  # the pool's wait and the statement's share it
        try:
            connection = await pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            raise self.translate(exc) from exc
        try:
            return await AsyncPostgresSession(self, connection, deadline=deadline).execute(sql, params, fetch)
        finally:
            await pool.putconn(connection)

    async def _write(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        if self.replicas is None:  # autocommit: one statement is its own transaction, one round trip
            return await self._read(sql, params, fetch)
        # With replicas, the commit's WAL position comes back in the same round trip (as in the sync
        # dialect): the statement, a sync point where it commits, then the position.
        pool = self._async_pool
        deadline = time.monotonic() + self.timeout
        try:
            connection = await pool.getconn(timeout=self.timeout)
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            raise self.translate(exc) from exc
        try:
            text = self.prepare(sql)
            with self.answered(connection):
                self.watch(connection, deadline)
                async with connection.pipeline() as pipeline:
                    cursor = await connection.execute(text, self.bounded(text, params, deadline))
                    end_statement(pipeline)
                    position = await connection.execute(WAL_POSITION)
            self._wrote(position_in(await position.fetchone()))
            return cast(T, await _ASYNC_FETCH[fetch](cursor))
        finally:
            await pool.putconn(connection)

    def _task_written(self) -> _Written:
        """The current task's :class:`_Written` (made now if it has none)."""
        written = self._written.get()
        if written is None:
            written = _Written()
            self._written.set(written)
        return written

    def _wrote(self, position: str | None) -> None:
        """This task committed at or before WAL ``position``: its reads on replicas wait for it."""
        written = self._task_written()
        written.position = max(written.position, lsn(position) or 0)

    def _commits_seen(self) -> int:
        return self._task_written().position

    def _session_on(self, connection: psycopg.AsyncConnection[Any], deadline: float) -> AsyncSession:
        return AsyncPostgresSession(self, connection, deadline=deadline)

    async def _fetched(self, cursor: Any, fetch: Fetch[T]) -> T:
        return cast(T, await _ASYNC_FETCH[fetch](cursor))

    @asynccontextmanager
    async def _borrow(self, deadline: float) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection, waited for until ``deadline`` at most."""
        with self.translated_errors():
            async with self._async_pool.connection(
                timeout=max(0.0, deadline - time.monotonic())
            ) as connection:
                yield connection

    @asynccontextmanager
    async def _read_session(self) -> AsyncIterator[AsyncSession]:
        deadline = time.monotonic() + self.timeout
        async with self._borrow(deadline) as connection:
            yield AsyncPostgresSession(self, connection, deadline=deadline)

    @asynccontextmanager
    async def _write_session(self) -> AsyncIterator[AsyncSession]:
        """BEGIN ... COMMIT in pipeline mode: both queued, COMMIT's outcome comes with the closing sync."""
        deadline = time.monotonic() + self.timeout
        async with self._borrow(deadline) as connection:
            try:
                with self.answered(connection):  # the pipeline's closing sync: COMMIT's outcome
                    async with connection.pipeline() as pipeline:
                        session = AsyncPostgresSession(self, connection, pipeline, deadline)
                        await session._send("BEGIN")
                        try:
                            yield session
                        except BaseException:
                            await session._synced()
                            await session._send("ROLLBACK")
                            raise
                        finally:
                            self.watch(connection, time.monotonic() + self.timeout)
                        await session._send("COMMIT")
                        position = await connection.execute(WAL_POSITION) if self.replicas else None
                if position is not None:
                    self._wrote(position_in(await position.fetchone()))
            finally:
                if self._left_unclean(connection):
                    await connection.close()

    async def _close(self) -> None:
        self.watchdog.close()
        for task in (self._listener, self._announcer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for replica in self.replicas.replicas if self.replicas else ():
            await replica.pool.close()
        await self._async_pool.close()

    # -- announcing this process's commits -----------------------------------------------

    def _announce(self) -> None:
        """Wake the announcer task (started at the first commit): it sends one NOTIFY soon."""
        self._announcement.set()
        if self._announcer is None:
            self._announcer = asyncio.get_running_loop().create_task(
                self._announce_commits(), name="workflow_db-announce"
            )

    async def _announce_commits(self) -> None:
        """NOTIFY after commits, at most once per ANNOUNCE_GAP, from a connection of its own."""
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await self._announcement.wait()
                self._announcement.clear()
                try:
                    if connection is None or connection.closed:
                        connection = await psycopg.AsyncConnection.connect(
                            self._conninfo, **self._announce_kwargs
                        )
                    await connection.execute(ANNOUNCEMENT)
                except psycopg.Error as exc:
                    self._announce_failed(exc)
                    if connection is not None:
                        await connection.close()
                    connection = None
                await asyncio.sleep(ANNOUNCE_GAP)
        finally:
            if connection is not None:
                await connection.close()

    # -- the change feed's listener ----------------------------------------------------

    async def listen_for_changes(self) -> None:
        """Start the listener task, once, if ``listen_url`` was given."""
        if self._listen_conninfo is not None and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="workflow_db-listen")

    async def _listen(self) -> None:
        """LISTEN, bump the change signal on each NOTIFY; reconnect when the connection drops."""
        assert self._listen_conninfo is not None
        first, longest = LISTEN_RETRY_SECONDS
        pause = first
        try:
            while True:
                try:
                    async with await psycopg.AsyncConnection.connect(
                        self._listen_conninfo, **self._listen_kwargs
                    ) as connection:
                        await connection.execute(f"LISTEN {LISTEN_CHANNEL}")
                        self._listening()
                        pause = first
                        while True:
                            async for _ in connection.notifies(stop_after=1):
                                pass
                            self.wake_watchers()
                            await asyncio.sleep(LISTEN_WAKE_GAP)  # a burst of NOTIFY wakes watchers once
                except psycopg.Error as exc:
                    self._listen_failed(exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, longest)
        finally:
            self.listening = False

"""Reads on PostgreSQL read replicas, mixed into :class:`.postgresql_async.AsyncPostgresDatabase`.

:class:`.replicas.ReplicaSet` decides (which replica to try, when one counts
as caught up, behind or failed, how long its answer may take); this mixin
runs those decisions on connections. ``replica_reads.py``, for the
synchronous dialect, is generated from this module by
``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from asyncio import sleep
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import psycopg_pool

from ..errors import WorkflowDBError
from .base import SQL, Fetch, Params, T
from .base_async import AsyncSession
from .replicas import REPLAY_POSITION, Replica, ReplicaSet, poll_pauses, position_in


class AsyncReplicaReads:
    """Reads outside a transaction, served by a replica that has replayed the caller's commits."""

    replicas: ReplicaSet | None
    timeout: float

    if TYPE_CHECKING:  # the dialect's own, used here

        def answered(self, connection: Any) -> AbstractContextManager[None]:
            raise NotImplementedError

        def watch(self, connection: Any, deadline: float) -> None:
            raise NotImplementedError

        def prepare(self, sql: SQL) -> str:
            raise NotImplementedError

        async def _read(self, sql: SQL, params: Params, fetch: Fetch[T], deadline: float | None = None) -> T:
            raise NotImplementedError

    @abstractmethod
    def _commits_seen(self) -> int:
        """The WAL position of the caller's newest commit (0: none yet)."""

    @abstractmethod
    def _session_on(self, connection: Any, deadline: float) -> AsyncSession:
        """A session on a replica's pooled ``connection``, its calls bounded by ``deadline``."""

    @abstractmethod
    async def _fetched(self, cursor: Any, fetch: Fetch[T]) -> T:
        """What ``fetch`` takes from an executed cursor."""

    async def _read_replica(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """Read on the next replica that has replayed the caller's commits (waiting a little for
        one that has not yet); on the primary when none can serve the read."""
        assert self.replicas is not None
        deadline = time.monotonic() + self.timeout
        target = self._commits_seen()
        for replica in self.replicas.candidates():
            served = await self._read_on(
                replica, sql, params, fetch, target=target, deadline=self.replicas.answer_by(deadline)
            )
            if served is not None:
                return served[0]
        return await self._read(sql, params, fetch, deadline)

    async def _read_on(
        self, replica: Replica, sql: SQL, params: Params, fetch: Fetch[T], *, target: int, deadline: float
    ) -> tuple[T] | None:
        """The read's result (in a tuple) if ``replica`` could serve it, else None."""
        replicas = self.replicas
        assert replicas is not None
        try:
            connection = await replica.pool.getconn(
                timeout=min(replicas.wait, max(0.0, deadline - time.monotonic()))
            )
        except psycopg_pool.PoolTimeout:
            replicas.no_connection(replica, replica.pool.get_stats())
            return None
        except psycopg_pool.PoolClosed:  # the database was closed: the primary's read says so
            return None
        session = self._session_on(connection, deadline)
        try:
            if not replicas.must_check(replica, target):  # it has replayed the caller's commits already
                return (await session.execute(sql, params, fetch),)
            with self.answered(connection):
                self.watch(connection, deadline)
                async with connection.pipeline():  # the replay position and the read: one round trip
                    position = await connection.execute(REPLAY_POSITION)
                    cursor = await connection.execute(self.prepare(sql), params)
                caught_up = replicas.caught_up(replica, position_in(await position.fetchone()), target)
            if caught_up:
                return (await self._fetched(cursor, fetch),)
            if caught_up is False:
                if await self._replayed(session, replica, target):
                    return (await session.execute(sql, params, fetch),)
                replicas.behind(replica)
        except WorkflowDBError as exc:
            replicas.failed(replica, str(exc))
        finally:
            await replica.pool.putconn(connection)
        return None

    async def _replayed(self, session: AsyncSession, replica: Replica, target: int) -> bool:
        """Whether ``replica`` replays up to ``target`` within the replica wait (looking again and again)."""
        replicas = self.replicas
        assert replicas is not None
        for pause in poll_pauses(min(session.deadline, time.monotonic() + replicas.wait)):
            await sleep(pause)
            if replicas.caught_up(replica, position_in(await session.one(REPLAY_POSITION)), target):
                return True
        return False

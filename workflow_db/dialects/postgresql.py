"""The PostgreSQL dialect: psycopg 3 behind a ``psycopg_pool.ConnectionPool``.

The only module that imports psycopg; :func:`workflow_db.connect` imports it
lazily, so SQLite users never load it.

* Connections are in autocommit mode: a read is one round trip, and a write
  of several statements runs inside ``conn.transaction()``.
* JSON (and, in a UTC session, timestamptz) is loaded as text and decoded
  by the store's records on first read, like SQLite's TEXT columns.
* The migration lock is a session advisory lock on a dedicated connection,
  taken by polling ``pg_try_advisory_lock`` (a blocked ``pg_advisory_lock``
  waiter would deadlock ``CREATE INDEX CONCURRENTLY``).
* With ``listen_url``, one more connection of its own (not pooled) LISTENs
  for the change feed's NOTIFY and wakes this process's watchers; when it
  drops, watchers poll until it is back (retried with a growing pause).
* A process announces its own commits to other processes' watchers from one
  more connection of its own, opened at the first write: after a commit it
  sends ``NOTIFY``, at most one every ANNOUNCE_GAP seconds, in a transaction
  of its own. A transaction that queued a notification commits under one
  database-wide lock held through its WAL flush; sent from every writer's
  transaction (schema 6 and 7's triggers), it made all writers commit one
  after another.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import select
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar, Self

import psycopg
import psycopg_pool
from psycopg.types.json import Json
from psycopg.types.string import TextLoader

from ..errors import DatabaseUnavailableError, IntegrityError, MigrationError, WorkflowDBError
from ..queries import BOUNDED_LOCK_WAIT
from . import redact_url
from .base import (
    LISTENING_POLL_INTERVAL,
    SQL,
    Database,
    Dialect,
    Fetch,
    Params,
    Session,
    T,
    fetch_rowcount,
)
from .replica_reads import ReplicaReads
from .replicas import (
    DEFAULT_REPLICA_WAIT,
    RECONNECT_TIMEOUT,
    WAL_POSITION,
    Replica,
    ReplicaSet,
    lsn,
    position_in,
)
from .watchdog import Watchdog

logger = logging.getLogger(__name__)

# Session time zones in which PostgreSQL writes timestamptz as "... +00".
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Universal", "Zulu"})

# pg_try_advisory_lock key: an arbitrary constant that only workflow_db's migrator uses.
MIGRATION_LOCK_KEY = 0x1B7C_4E2A_9D35_60F1
MIGRATION_LOCK_POLL_SECONDS = 0.2

AnyConnection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]
_LOCK_TIMEOUT_PARAMETER = "workflow_db_lock_timeout"
_LOCK_TIMEOUT_SQL = f"set_config('lock_timeout', :{_LOCK_TIMEOUT_PARAMETER}, true) IS NOT NULL"
WATCHDOG_GRACE = 0.25
"""Seconds past a call's deadline before the watchdog closes a connection still waiting: the
server's own lock timeout ends at the deadline and should answer first."""

LISTEN_CHANNEL = "workflow_changes"
"""The channel on which processes announce their commits (:meth:`PostgresDialect._announce`)."""
ANNOUNCEMENT = f"NOTIFY {LISTEN_CHANNEL}"
ANNOUNCE_GAP = 0.005
"""A process sends at most one NOTIFY per this many seconds, however many writes it commits."""
LISTEN_RETRY_SECONDS = (0.05, 5.0)
"""The first and the longest pause before connecting the listener again."""
LISTEN_WAKE_GAP = 0.005
"""After a NOTIFY wakes watchers, the listener lets this many seconds pass before it wakes them again."""

# A FATAL error at login is for good (no such role or database, a wrong
# password), unless the server only was not ready yet.
# libpq's own refusal of a connection parameter's value, before any server is reached.
_LIBPQ_REFUSED = re.compile(r"invalid (?:\w+ )?value|invalid connection option", re.IGNORECASE)
_NOT_READY = re.compile(
    r"starting up|shutting down|in recovery|too many|connection slots|not yet accepting|terminating",
    re.IGNORECASE,
)

_PLACEHOLDER_TOKENS = re.compile(
    r"""'(?:[^']|'')*'      # string literal
      | "(?:[^"]|"")*"      # quoted identifier
      | --[^\n]*            # comment
      | ::                  # cast, not a placeholder
      | :([A-Za-z_]\w*)     # :name placeholder
      | %""",
    re.VERBOSE,
)
_SCRIPT_TOKENS = re.compile(
    r"""'(?:[^']|'')*' | "(?:[^"]|"")*" | \$(\w*)\$.*?\$\1\$ | --[^\n]* | /\*.*?\*/ | ;""",
    re.VERBOSE | re.DOTALL,
)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _reason(message: str) -> str:
    """The server's (or libpq's) own words from a connection error's message, on one line."""
    words = message.rpartition(" failed: ")[2] or message
    return " ".join(words.replace("FATAL:", "").split())


def _already_serialised(text: str) -> str:
    return text


def _to_pyformat(match: re.Match[str]) -> str:
    name = match.group(1)
    if name is not None:
        return f"%({name})s"
    return match.group(0).replace("%", "%%")


def end_statement(pipeline: psycopg.Pipeline | psycopg.AsyncPipeline) -> None:
    """Queue a sync point in ``pipeline``: in autocommit mode the statements before it commit there,
    before the ones after it run; nothing is sent or waited for (``Pipeline.sync`` would wait for
    the results). psycopg's own way of ending a pipelined statement; no public name offers it."""
    pipeline._enqueue_sync()


def queue_command(connection: AnyConnection, statement: str) -> Any:
    """The generator that, in pipeline mode, only queues a result-less command such as ``SAVEPOINT``.

    It is how psycopg's own transaction blocks send BEGIN, SAVEPOINT and
    RELEASE: no cursor, no send and no wait of its own; the command leaves with
    the next statement and an error in it surfaces with the next result read.
    ``cursor.execute`` would send it at once (a cursor, two polls and a send
    each: a fifth of a unit of work's client CPU, measured). Run it with
    ``connection.wait``.
    """
    return connection._exec_command(statement.encode())


class PostgresSession(Session):
    """A session on one pooled psycopg connection (autocommit mode).

    A write transaction's session runs in psycopg's pipeline mode: a store
    call's ``SAVEPOINT``, its statement and the ``RELEASE`` of the call before
    go out together (the savepoint commands only queued, never sent alone),
    and only reading a result waits for the server. So each call in a
    transaction costs one round trip and one send, as outside one, and still
    undoes itself alone when it fails.
    """

    database: PostgresDatabase

    def __init__(
        self,
        database: PostgresDatabase,
        connection: Any,
        pipeline: psycopg.Pipeline | None = None,
        deadline: float = math.inf,
    ) -> None:
        super().__init__(database, connection)
        self.pipeline = pipeline
        self.deadline = deadline

    def execute(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """Run ``sql`` and return ``fetch(cursor)``; a row count in a pipeline waits for its result.

        Its lock waits end at the call's deadline, on the server; its wait for the answer there too,
        by the watchdog.
        """
        database, connection = self.database, self.connection
        text = database.prepare(sql)
        key = id(connection)
        try:
            database.watch(connection, self.deadline)
            cursor = connection.execute(text, database.bounded(text, params, self.deadline))
            if fetch is fetch_rowcount and self.pipeline is not None:
                self.pipeline.sync()
            return fetch(cursor)
        except database.driver_errors as exc:
            raise database.failed(exc, key) from exc
        finally:
            database.watchdog.unwatch(key)

    def script(self, statement: str) -> None:
        """Run one statement verbatim; in a pipeline, only queue it (see :func:`queue_command`)."""
        with self.database.translated_errors():
            if self.pipeline is None:
                self.connection.execute(statement)
            else:
                self.connection.wait(queue_command(self.connection, statement))

    def _undo(self, savepoint: str) -> None:
        if self.pipeline is not None:
            # A failed statement leaves the pipeline aborted until a sync point; what
            # the sync reports again is the error being undone.
            with contextlib.suppress(WorkflowDBError), self.database.answered(self.connection):
                self.database.watch(self.connection, time.monotonic() + self.database.timeout)
                self.pipeline.sync()
        super()._undo(savepoint)

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """``BEGIN`` ... ``COMMIT``; in a pipeline both are queued, and the pipeline's closing
        sync brings COMMIT's outcome (one round trip fewer than psycopg's transaction block)."""
        if self.pipeline is None:
            with self.database.translated_errors(), self.connection.transaction():
                yield self
            return
        self.script("BEGIN")
        try:
            yield self
        except BaseException:
            with contextlib.suppress(WorkflowDBError), self.database.answered(self.connection):
                self.database.watch(self.connection, time.monotonic() + self.database.timeout)
                self.pipeline.sync()
            self.script("ROLLBACK")
            raise
        finally:  # the pipeline's closing sync waits for COMMIT's (or ROLLBACK's) outcome
            self.database.watch(self.connection, time.monotonic() + self.database.timeout)
        self.script("COMMIT")


class PostgresDialect(Dialect):
    """What the sync and the async PostgreSQL database share: login, SQL, types, errors."""

    dialect: ClassVar[str] = "postgresql"
    driver_errors = (psycopg.Error, psycopg_pool.PoolTimeout)
    changes_numbered_on_read: ClassVar[bool] = True
    writes_in_with: ClassVar[bool] = True
    _secrets: list[str]
    _conninfo: str
    _connect_kwargs: dict[str, Any]
    _pool: psycopg_pool.ConnectionPool[Any] | psycopg_pool.AsyncConnectionPool[Any]

    def __init__(
        self,
        conninfo: str,
        *,
        display_url: str,
        secrets: list[str],
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 30.0,
        prepare_threshold: int | None = 5,
        poll_interval: float,
        listen_conninfo: str | None = None,
        replica_conninfos: Sequence[tuple[str, str]] = (),
        replica_wait: float = DEFAULT_REPLICA_WAIT,
    ) -> None:
        super().__init__(timeout, display_url, poll_interval)
        self._listen_conninfo = listen_conninfo
        self._replica_conninfos = replica_conninfos
        """``(conninfo, URL without password)`` of each read replica."""
        self._replica_wait = replica_wait
        self.listening = False
        """Whether the LISTEN connection is up (watchers then poll only as a safety net)."""
        self.announce_commits = True
        """Whether this process announces its commits to other processes' watchers (one NOTIFY per
        ANNOUNCE_GAP at most, after the commits). Off, they see its changes when they poll."""
        self._secrets = secrets
        self._conninfo = conninfo
        self._connect_kwargs = {
            "autocommit": True,
            "prepare_threshold": prepare_threshold,
            "connect_timeout": max(2, math.ceil(timeout)),
        }
        self._pool_options: dict[str, Any] = {
            "min_size": min_size,
            "max_size": max_size,
            "timeout": timeout,
            "open": False,
            "kwargs": self._connect_kwargs,
            "name": "workflow_db",
        }
        """What the sync and the async pool are made with, besides ``check`` and ``configure``."""
        self._listen_kwargs = {**self._connect_kwargs, "application_name": "workflow_db listen"}
        self._bounded_texts: set[str] = set()
        self.watchdog = Watchdog()
        """Cuts short a statement still waiting for the server at its call's deadline."""
        self._announce_kwargs = {
            **self._connect_kwargs,
            "prepare_threshold": None,
            "application_name": "workflow_db announce",
        }

    def _replica_set(self, make_pool: Callable[..., Any], **pool_options: Any) -> ReplicaSet | None:
        """The read replicas, each with a pool made like the primary's (none unless ``replica_urls``)."""
        if not self._replica_conninfos:
            return None
        options = {
            **self._pool_options,
            "name": "workflow_db-replica",
            "reconnect_timeout": RECONNECT_TIMEOUT,
            **pool_options,
        }
        replicas = [
            Replica(make_pool(conninfo, **options), shown) for conninfo, shown in self._replica_conninfos
        ]
        return ReplicaSet(replicas, self._replica_wait)

    @property
    def change_poll_interval(self) -> float:
        """Seconds a watcher waits before looking at the feed unwoken: long while LISTEN is up."""
        return max(LISTENING_POLL_INTERVAL, self.poll_interval) if self.listening else self.poll_interval

    def _listening(self) -> None:
        """The listener is connected: wake watchers to read what came meanwhile."""
        if not self.listening:
            logger.info("listening for changes on %s", redact_url(self._listen_conninfo or ""))
        self.listening = True
        self.wake_watchers()

    def _listen_failed(self, exc: BaseException, pause: float) -> None:
        """The listener could not connect, or its connection dropped: watchers poll meanwhile."""
        logger.warning(
            "listening for changes on %s: %s; watchers poll every %g s, retrying in %g s",
            redact_url(self._listen_conninfo or ""),
            _reason(self._scrub(str(exc))),
            self.poll_interval,
            pause,
        )
        self.listening = False
        self.wake_watchers()

    def committed(self) -> None:
        """A write of this process committed: wake its watchers, and announce it to other processes."""
        self.wake_watchers()
        if self.announce_commits:
            self._announce()

    @abstractmethod
    def _announce(self) -> None:
        """Have one NOTIFY sent soon, outside every writer's transaction (coalesced per ANNOUNCE_GAP)."""

    def _announce_failed(self, exc: BaseException) -> None:
        """Announcing commits failed (the server is away): watchers elsewhere see them when they poll."""
        logger.debug("announcing commits to %s: %s", self.display_url, _reason(self._scrub(str(exc))))

    def _login_failure(
        self, exc: psycopg.OperationalError, waited_enough: bool
    ) -> DatabaseUnavailableError | ValueError | None:
        """The error to raise for a failed probe login, or None to try again.

        A login the server refuses (no such role or database, a wrong
        password) fails at once with the server's reason; a parameter libpq
        refuses (``keepalives=abc``) at once as a ValueError naming it; a
        server that is down, starting or silent is retried until ``timeout``,
        without a log line per attempt.
        """
        message = self._scrub(str(exc))
        reason = _reason(message)
        if _LIBPQ_REFUSED.search(message):
            return ValueError(f"PostgreSQL URL {self.display_url}: libpq refuses it: {reason}")
        if "FATAL" in message and not _NOT_READY.search(message):
            return DatabaseUnavailableError(f"PostgreSQL at {self.display_url} refused the login: {reason}")
        if waited_enough:
            return DatabaseUnavailableError(
                f"PostgreSQL at {self.display_url} did not accept a connection within "
                f"{self.timeout:g} s: {reason}"
            )
        return None

    def _pool_timed_out(self) -> DatabaseUnavailableError:
        return DatabaseUnavailableError(
            f"PostgreSQL at {self.display_url} did not accept a connection within {self.timeout:g} s"
        )

    @staticmethod
    def _left_unclean(connection: AnyConnection) -> bool:
        """After a write session: is the connection still in pipeline mode or in a transaction?

        An interrupted block (a cancelled task, KeyboardInterrupt) can leave libpq in
        pipeline mode (seen with psycopg 3.3); such a connection is closed, never pooled.
        """
        unclean = bool(connection.pgconn.pipeline_status or connection.info.transaction_status)
        if unclean:
            logger.debug("closing a connection an interrupted write session left unclean")
        return unclean

    @staticmethod
    def _needs_check(connection: AnyConnection) -> bool:
        """Whether a pooled connection must pay a round trip before it is lent.

        An idle connection's socket has nothing to read unless the server spoke:
        a terminated backend or a shutting-down server sends an error and closes
        it. Only then does it pay ``check_connection``'s round trip, which raises
        (and the pool replaces the connection) if it is broken.
        """
        return connection.closed or bool(select.select([connection.fileno()], [], [], 0)[0])

    @staticmethod
    def _configure(connection: AnyConnection) -> None:
        """Hand json and jsonb, and timestamps where their text is ISO 8601 in UTC, to the store as text.

        The store's records decode both on first read, the same way on both
        dialects (psycopg's timestamptz loader took 23 of the 45 ms of listing
        10,000 runs). A session whose DateStyle or TimeZone differs gets
        datetimes from psycopg, which the store takes as they are.
        """
        adapters = connection.adapters
        adapters.register_loader("jsonb", TextLoader)
        adapters.register_loader("json", TextLoader)
        info = connection.info
        if (info.parameter_status("DateStyle") or "").startswith("ISO") and (
            info.parameter_status("TimeZone") or ""
        ) in _UTC_ZONES:
            adapters.register_loader("timestamptz", TextLoader)

    # -- types, SQL and errors -------------------------------------------------------

    def _convert(self, sql: str) -> str:
        """``:name`` placeholders to pyformat, and each write's lock waits bounded by what is left
        of its call's time (a parameter, :meth:`bounded`)."""
        converted = _PLACEHOLDER_TOKENS.sub(_to_pyformat, sql.replace(BOUNDED_LOCK_WAIT, _LOCK_TIMEOUT_SQL))
        if BOUNDED_LOCK_WAIT in sql:
            self._bounded_texts.add(converted)
        return converted

    # -- one deadline per call --------------------------------------------------------

    def bounded(self, text: str, params: Params, deadline: float) -> Params:
        """``params`` of the statement ``text``, with its lock timeout: what is left until ``deadline``."""
        if text not in self._bounded_texts:
            return params
        left = deadline - time.monotonic() if deadline != math.inf else self.timeout
        lock_timeout = f"{max(1, round(left * 1000))}ms"
        if isinstance(params, Mapping):
            return {**params, _LOCK_TIMEOUT_PARAMETER: lock_timeout}
        assert not params, "a statement bounding its lock waits takes named parameters"
        return {_LOCK_TIMEOUT_PARAMETER: lock_timeout}

    def watch(self, connection: AnyConnection, deadline: float) -> None:
        """Shut ``connection`` down if it is still waiting for the server at ``deadline`` (plus a grace
        that lets the server's own lock timeout, at the deadline, answer first)."""
        if deadline != math.inf:
            self.watchdog.watch(id(connection), connection.fileno(), deadline + WATCHDOG_GRACE)

    def failed(self, exc: BaseException, key: int) -> WorkflowDBError:
        """The error for a driver error of a statement on the connection ``key`` (its watch ends)."""
        if self.watchdog.unwatch(key):
            return DatabaseUnavailableError(
                f"PostgreSQL at {self.display_url} did not answer within the timeout of {self.timeout:g} s; "
                "the connection was closed"
            )
        return self.translate(exc)

    @contextmanager
    def answered(self, connection: AnyConnection) -> Iterator[None]:
        """Until the block ends: driver errors translated (a wait the watchdog cut short as no
        answer in time); then whatever ``watch`` armed in it for ``connection`` is over."""
        key = id(connection)
        try:
            yield
        except self.driver_errors as exc:
            raise self.failed(exc, key) from exc
        finally:
            self.watchdog.unwatch(key)

    def encode_time(self, value: datetime) -> datetime:
        """psycopg sends datetimes as timestamptz as they are."""
        return value

    def encode_json(self, text: str) -> Json:
        """Already-serialised JSON, sent typed as json (no re-encoding), stored as written."""
        return Json(text, dumps=_already_serialised)

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message.strip()

    def translate(self, exc: BaseException) -> WorkflowDBError:
        """psycopg and pool errors as workflow_db errors, with any password scrubbed."""
        if isinstance(exc, psycopg_pool.PoolTimeout):
            return DatabaseUnavailableError(
                f"no connection to PostgreSQL at {self.display_url} within {self.timeout:g} s: "
                f"the server is unreachable or all {self._pool.max_size} pooled connections are busy"
            )
        message = self._scrub(str(exc))
        if isinstance(exc, psycopg.IntegrityError):
            return IntegrityError(f"PostgreSQL refused the write: {message}")
        if isinstance(exc, psycopg.errors.InFailedSqlTransaction | psycopg.errors.PipelineAborted):
            return WorkflowDBError(
                "PostgreSQL: a call failed earlier in this transaction; it can only be rolled back "
                "(leave the store.transaction() block)"
            )
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return DatabaseUnavailableError(
                f"PostgreSQL at {self.display_url}: waited longer than the timeout of {self.timeout:g} s "
                "for a row another transaction holds"
            )
        if isinstance(exc, psycopg.OperationalError):
            return DatabaseUnavailableError(f"PostgreSQL at {self.display_url}: {message}")
        return WorkflowDBError(f"PostgreSQL: {message}")


class PostgresDatabase(PostgresDialect, ReplicaReads, Database):
    """A PostgreSQL server reached through a connection pool."""

    _pool: psycopg_pool.ConnectionPool[Any]

    migrations_table_sql: ClassVar[str] = """
        CREATE TABLE IF NOT EXISTS workflow_db_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            checksum text NOT NULL,
            applied_at timestamptz NOT NULL,
            duration_ms double precision NOT NULL
        )"""

    def __init__(self, conninfo: str, **options: Any) -> None:
        """Connect: wait for the server (at most ``timeout``), then fill the pool."""
        super().__init__(conninfo, **options)
        self._listener: threading.Thread | None = None
        self._listener_lock = threading.Lock()
        self._closing = threading.Event()
        self._announcer: threading.Thread | None = None
        self._announcement = threading.Event()
        self._written = 0
        """The WAL position of this process's newest commit, as far as reads on replicas go."""
        self._written_lock = threading.Lock()
        self._pool = psycopg_pool.ConnectionPool(
            conninfo, check=self._check, configure=self._configure, **self._pool_options
        )
        self._wait_for_server()
        try:
            self._pool.open(wait=True, timeout=self.timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close(timeout=0)
            raise self._pool_timed_out() from exc
        self.replicas = self._replica_set(
            psycopg_pool.ConnectionPool, check=self._check, configure=self._configure
        )
        for replica in self.replicas.replicas if self.replicas else ():
            replica.pool.open(wait=False)  # a replica that is down is skipped, not waited for

    # -- connections -------------------------------------------------------------

    def _wait_for_server(self) -> None:
        """Log in once before the pool does, so that the pool never retries a hopeless login."""
        deadline = time.monotonic() + self.timeout
        pause = 0.05
        while True:
            failure: DatabaseUnavailableError | ValueError | None = None
            try:
                psycopg.Connection.connect(self._conninfo, **self._connect_kwargs).close()
                return
            except psycopg.OperationalError as exc:
                failure = self._login_failure(exc, time.monotonic() + pause >= deadline)
                if isinstance(failure, DatabaseUnavailableError):
                    raise failure from exc
            if failure is not None:
                raise failure  # a ValueError, raised here: no driver error in its context
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @classmethod
    def _check(cls, connection: psycopg.Connection[Any]) -> None:
        """Check a pooled connection before lending it, without a round trip when idle and quiet."""
        if cls._needs_check(connection):
            psycopg_pool.ConnectionPool.check_connection(connection)

    @contextmanager
    def _borrow(self, deadline: float) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, waited for until ``deadline`` at most."""
        with (
            self.translated_errors(),
            self._pool.connection(timeout=max(0.0, deadline - time.monotonic())) as connection,
        ):
            yield connection

    def _read(self, sql: SQL, params: Params, fetch: Fetch[T], deadline: float | None = None) -> T:
        # The hot path: getconn/putconn directly (no context managers), one round trip.
        if deadline is None:
            deadline = time.monotonic() + self.timeout  # the pool's wait and the statement's share it
        try:
            connection = self._pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            raise self.translate(exc) from exc
        try:
            return PostgresSession(self, connection, deadline=deadline).execute(sql, params, fetch)
        finally:
            self._pool.putconn(connection)

    def _write(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        if self.replicas is None:  # autocommit: one statement is its own transaction, one round trip
            return self._read(sql, params, fetch)
        # With replicas, the commit's WAL position comes back in the same round trip: the statement,
        # a sync point (its implicit transaction commits there; see end_statement), then the position.
        deadline = time.monotonic() + self.timeout
        try:
            connection = self._pool.getconn(timeout=self.timeout)
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            raise self.translate(exc) from exc
        try:
            text = self.prepare(sql)
            with self.answered(connection):
                self.watch(connection, deadline)
                with connection.pipeline() as pipeline:
                    cursor = connection.execute(text, self.bounded(text, params, deadline))
                    end_statement(pipeline)
                    position = connection.execute(WAL_POSITION)
            self._wrote(position_in(position.fetchone()))
            return fetch(cursor)
        finally:
            self._pool.putconn(connection)

    def _wrote(self, position: str | None) -> None:
        """This process committed at or before WAL ``position``: reads on replicas wait for it."""
        written = lsn(position) or 0
        with self._written_lock:
            self._written = max(self._written, written)

    def _commits_seen(self) -> int:
        return self._written

    def _session_on(self, connection: psycopg.Connection[Any], deadline: float) -> Session:
        return PostgresSession(self, connection, deadline=deadline)

    def _fetched(self, cursor: Any, fetch: Fetch[T]) -> T:
        return fetch(cursor)

    @contextmanager
    def _read_session(self) -> Iterator[Session]:
        deadline = time.monotonic() + self.timeout
        with self._borrow(deadline) as connection:
            yield PostgresSession(self, connection, deadline=deadline)

    @contextmanager
    def _write_session(self) -> Iterator[Session]:
        deadline = time.monotonic() + self.timeout
        with self._borrow(deadline) as connection:
            try:
                with (
                    self.answered(connection),
                    connection.pipeline() as pipeline,
                ):  # closing sync: COMMIT's outcome
                    with PostgresSession(self, connection, pipeline, deadline).transaction() as session:
                        yield session
                    position = connection.execute(WAL_POSITION) if self.replicas else None
                if position is not None:
                    self._wrote(position_in(position.fetchone()))
            finally:
                if self._left_unclean(connection):
                    connection.close()

    @contextmanager
    def migration_session(self, lock_timeout: float = 900.0) -> Iterator[Session]:
        """A dedicated autocommit connection holding the session advisory lock (polled)."""
        with self.translated_errors():
            connection = psycopg.Connection.connect(self._conninfo, **self._connect_kwargs)
        try:
            self._configure(connection)
            session = PostgresSession(self, connection)
            self._take_migration_lock(session, lock_timeout)
            yield session
            if self.replicas is not None:  # reads on replicas wait for the new schema
                self._wrote(position_in(session.one(WAL_POSITION)))
        finally:
            connection.close()  # ends the session, and with it the advisory lock

    def _take_migration_lock(self, session: Session, lock_timeout: float) -> None:
        deadline = time.monotonic() + lock_timeout
        waited = False
        while True:
            row = session.one("SELECT pg_try_advisory_lock(:key)", {"key": MIGRATION_LOCK_KEY})
            if row and row[0]:
                return
            if not waited:
                logger.info("another process holds the migration lock; waiting for it")
                waited = True
            if time.monotonic() >= deadline:
                raise MigrationError(f"the migration lock was not released within {lock_timeout:g} s")
            time.sleep(MIGRATION_LOCK_POLL_SECONDS)

    def check_migration_lock(self, session: Session) -> None:
        """Inside a migration's transaction: is the advisory lock held by this server session?

        It is not when the URL leads through a pooler in transaction mode
        (PgBouncer), which hands each transaction to any server connection: the
        lock then guards nothing, so the migration stops before it changes anything.
        """
        row = session.one(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
            " AND classid = :high AND objid = :low AND objsubid = 1",
            {"high": MIGRATION_LOCK_KEY >> 32, "low": MIGRATION_LOCK_KEY & 0xFFFF_FFFF},
        )
        if row is None:
            raise MigrationError(
                "the migration lock is held by another server session than this transaction's: "
                "the URL leads through a connection pooler in transaction mode (PgBouncer?). "
                "Point the migrator at the PostgreSQL server itself"
            )

    def split_script(self, text: str) -> list[str]:
        """Split at top-level semicolons (outside quotes, dollar quotes, comments)."""
        statements: list[str] = []
        start = 0
        for match in _SCRIPT_TOKENS.finditer(text):
            if match.group(0) == ";":
                statements.append(text[start : match.end()])
                start = match.end()
        statements.append(text[start:])
        return [s.strip() for s in statements if _COMMENTS.sub("", s).strip()]

    def _close(self) -> None:
        self._closing.set()
        self.watchdog.close()
        self._announcement.set()
        for thread in (self._listener, self._announcer):
            if thread is not None:
                thread.join()
        for replica in self.replicas.replicas if self.replicas else ():
            replica.pool.close()
        self._pool.close()

    # -- announcing this process's commits -----------------------------------------------

    def _announce(self) -> None:
        """Wake the announcer thread (started at the first commit): it sends one NOTIFY soon."""
        self._announcement.set()
        if self._announcer is None:
            with self._listener_lock:
                if self._announcer is None and not self._closing.is_set():
                    self._announcer = threading.Thread(
                        target=self._announce_commits, name="workflow_db-announce", daemon=True
                    )
                    self._announcer.start()

    def _announce_commits(self) -> None:
        """NOTIFY after commits, at most once per ANNOUNCE_GAP, from a connection of its own."""
        connection: psycopg.Connection[Any] | None = None
        try:
            while True:
                self._announcement.wait()
                if self._closing.is_set():
                    return
                self._announcement.clear()
                try:
                    if connection is None or connection.closed:
                        connection = psycopg.Connection.connect(self._conninfo, **self._announce_kwargs)
                    connection.execute(ANNOUNCEMENT)
                except psycopg.Error as exc:
                    self._announce_failed(exc)
                    if connection is not None:
                        connection.close()
                    connection = None
                self._closing.wait(ANNOUNCE_GAP)
        finally:
            if connection is not None:
                connection.close()

    # -- the change feed's listener ----------------------------------------------------

    def listen_for_changes(self) -> None:
        """Start the listener thread, once, if ``listen_url`` was given."""
        if self._listen_conninfo is None or self._listener is not None:
            return
        with self._listener_lock:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="workflow_db-listen", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        """LISTEN, bump the change signal on each NOTIFY; reconnect when the connection drops."""
        assert self._listen_conninfo is not None
        first, longest = LISTEN_RETRY_SECONDS
        pause = first
        while not self._closing.is_set():
            try:
                with psycopg.Connection.connect(self._listen_conninfo, **self._listen_kwargs) as connection:
                    connection.execute(f"LISTEN {LISTEN_CHANNEL}")
                    self._listening()
                    pause = first
                    while not self._closing.is_set():
                        woken = False
                        for _ in connection.notifies(timeout=0.2, stop_after=1):
                            woken = True
                        if woken:  # then a pause: a burst of NOTIFY wakes watchers once
                            self.wake_watchers()
                            self._closing.wait(LISTEN_WAKE_GAP)
            except psycopg.Error as exc:
                if self._closing.is_set():
                    break
                self._listen_failed(exc, pause)
            self._closing.wait(pause)
            pause = min(pause * 2, longest)
        self.listening = False

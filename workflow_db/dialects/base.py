"""The interface both dialects satisfy: sessions, transactions, types and errors.

The store and the migration runner speak only to :class:`Database` and
:class:`Session`; everything that depends on which database it is lives in the
two subclasses next to this module.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from ..errors import WorkflowDBError
from .replicas import ReplicaSet

Params = Mapping[str, Any] | Sequence[Any]
Row = tuple[Any, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class DialectSQL:
    """One statement written twice, for the few places where the dialects differ."""

    sqlite: str
    postgresql: str


SQL = str | DialectSQL


def fetch_all(cursor: Any) -> list[Row]:
    """Every row of an executed cursor."""
    return cursor.fetchall()  # type: ignore[no-any-return]


def fetch_one(cursor: Any) -> Row | None:
    """The first row of an executed cursor, or None."""
    return cursor.fetchone()  # type: ignore[no-any-return]


def fetch_none(cursor: Any) -> None:
    """Nothing: in a pipelined transaction the statement goes out with the next one that waits."""


def fetch_rowcount(cursor: Any) -> int:
    """How many rows an executed statement changed."""
    return cursor.rowcount  # type: ignore[no-any-return]


Fetch = Callable[[Any], T]

DEFAULT_POLL_INTERVAL = 0.05
"""Seconds between two looks at the change feed while a watcher waits with nothing to wake it."""
LISTENING_POLL_INTERVAL = 1.0
"""The same while LISTEN is up: a safety net only (NOTIFY wakes watchers at once)."""


class _ThreadState(threading.local):
    """The transaction session of the current thread, if any.

    A class attribute is the default every thread sees: ``getattr(local, name,
    None)`` on a plain ``threading.local`` raises and catches AttributeError
    inside, about 1 us on every store call outside a transaction.
    """

    session: Session | None = None


class Session(ABC):
    """One connection lent to one thread for one unit of work.

    SQL is written once with ``:name`` placeholders; each dialect converts it
    (once per text, cached by its :class:`Database`) to its driver's style.
    """

    deadline: float = math.inf
    """When the current call must be over (``time.monotonic()``): its waits for a lock and for the
    server's answer end there (PostgreSQL)."""

    def __init__(self, database: Database, connection: Any) -> None:
        self.database = database
        self.connection = connection
        self._savepoints = 0

    def execute(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """Run ``sql`` and return ``fetch(cursor)``; driver errors come out translated."""
        database = self.database
        try:
            return fetch(self.connection.execute(database.prepare(sql), params))
        except database.driver_errors as exc:
            raise database.translate(exc) from exc

    def all(self, sql: SQL, params: Params = ()) -> list[Row]:
        """Run ``sql`` and return every row."""
        return self.execute(sql, params, fetch_all)

    def one(self, sql: SQL, params: Params = ()) -> Row | None:
        """Run ``sql`` and return its first row, or None."""
        return self.execute(sql, params, fetch_one)

    def run(self, sql: SQL, params: Params = ()) -> int:
        """Run ``sql`` and return the number of rows it changed."""
        return self.execute(sql, params, fetch_rowcount)

    def many(self, sql: SQL, rows: Sequence[Params]) -> None:
        """Run ``sql`` once for every parameter set in ``rows`` (a bulk write)."""
        if rows:
            with self.database.translated_errors():
                self.connection.cursor().executemany(self.database.prepare(sql), rows)

    def script(self, statement: str) -> None:
        """Run one statement of a migration file verbatim (no placeholders)."""
        with self.database.translated_errors():
            self.connection.execute(statement)

    @contextmanager
    def savepoint(self) -> Iterator[Self]:
        """A nested unit of work: on error only its own changes are undone."""
        self._savepoints += 1
        name = f"workflow_db_{self._savepoints}"
        try:
            self.script(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                self._undo(name)
                raise
            self.script(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1

    def _undo(self, savepoint: str) -> None:
        """Undo everything since ``savepoint`` and forget it."""
        self.script(f"ROLLBACK TO SAVEPOINT {savepoint}")
        self.script(f"RELEASE SAVEPOINT {savepoint}")

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Self]:
        """A top-level write transaction: committed on success, rolled back on error."""


class Dialect(ABC):
    """What a connected database is, sync or async: its SQL, types and errors."""

    dialect: ClassVar[str]
    """``"sqlite"`` or ``"postgresql"``."""

    driver_errors: tuple[type[BaseException], ...]
    """The driver's exceptions, which :meth:`translate` turns into workflow_db.errors."""

    replicas: ReplicaSet | None = None
    """The read replicas, if any (PostgreSQL's ``replica_urls``)."""

    writes_in_with: ClassVar[bool] = False
    """Whether one statement can write several tables (``WITH ... AS (INSERT ...) INSERT ...``)."""

    changes_numbered_on_read: ClassVar[bool] = False
    """Whether the feed's reader numbers committed changes first (queries.SEQUENCE_CHANGES).

    PostgreSQL's concurrent writers commit in any order, so a change is
    numbered once visible; SQLite's one writer numbers it as it writes.
    """

    def __init__(
        self, timeout: float, display_url: str, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self.timeout = timeout
        self.display_url = display_url
        """The database's URL with any password hidden: for messages and logs."""
        self.poll_interval = poll_interval
        """Seconds between two looks at the feed while watchers wait and nothing wakes them."""
        self.closed = False
        """Set by ``close()``: watchers end."""
        self._prepared: dict[SQL, str] = {}

    def prepare(self, sql: SQL) -> str:
        """Return ``sql`` in the driver's placeholder style (converted once)."""
        try:
            return self._prepared[sql]
        except KeyError:
            text = getattr(sql, self.dialect) if isinstance(sql, DialectSQL) else sql
            converted = self._prepared[sql] = self._convert(text)
            return converted

    def bounded(self, text: str, params: Params, deadline: float) -> Params:
        """``params`` of the prepared statement ``text`` as sent before ``deadline`` (PostgreSQL adds
        its lock timeout: what is left of the call's time); here, as they are."""
        return params

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Translate driver exceptions raised inside into workflow_db.errors."""
        try:
            yield
        except self.driver_errors as exc:
            raise self.translate(exc) from exc

    @property
    def change_poll_interval(self) -> float:
        """Seconds a watcher waits before looking at the feed unwoken."""
        return self.poll_interval

    @abstractmethod
    def wake_watchers(self) -> None:
        """Wake this process's watchers of the feed: a change may have committed."""

    def committed(self) -> None:
        """A write of this process committed: wake its watchers (PostgreSQL also tells other processes)."""
        self.wake_watchers()

    @abstractmethod
    def _convert(self, sql: str) -> str:
        """Convert ``:name`` placeholders to the driver's style."""

    @abstractmethod
    def translate(self, exc: BaseException) -> WorkflowDBError:
        """The workflow_db error for a driver exception (one of ``driver_errors``)."""

    @abstractmethod
    def encode_time(self, value: datetime) -> Any:
        """A UTC datetime as the driver stores it."""

    @abstractmethod
    def encode_json(self, text: str) -> Any:
        """Serialised JSON text as a parameter the driver sends as the JSON column type."""


class ChangeSignal:
    """Wakes the watchers of one database in this process when a change may have committed.

    Bumped after each write this object commits and, on PostgreSQL, by the
    listener on each NOTIFY; watchers wait for the generation to move.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.fetching = threading.Lock()
        """Held by the one watcher that fetches for all."""
        self._condition = threading.Condition()
        self._waiting = 0

    def bump(self) -> None:
        """A change may have committed: wake every waiting watcher."""
        self.generation += 1
        if self._waiting:
            with self._condition:
                self._condition.notify_all()

    def wait(self, generation: int, timeout: float) -> None:
        """Return once the generation is no longer ``generation``, or after ``timeout`` seconds."""
        with self._condition:
            self._waiting += 1
            try:
                self._condition.wait_for(lambda: self.generation != generation, timeout)
            finally:
                self._waiting -= 1

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a fetcher keeping its distance from the previous fetch)."""
        time.sleep(seconds)


class Database(Dialect):
    """A connected database: the object :func:`workflow_db.connect` returns."""

    def __init__(
        self, timeout: float, display_url: str, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        super().__init__(timeout, display_url, poll_interval)
        self._local = _ThreadState()
        self.changes = ChangeSignal()
        """Moves when a change may have committed: what watchers wait on."""

    # -- public ---------------------------------------------------------------

    def close(self) -> None:
        """Close every connection (ending every watcher); the object cannot be used afterwards.

        Closing it again does nothing.
        """
        if self.closed:
            return
        self.closed = True
        self.wake_watchers()
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- one statement: the store's hot paths ------------------------------------

    def read(self, sql: SQL, params: Params, fetch: Fetch[T], *, replica: bool = False) -> T:
        """Run one reading statement (inside a transaction: in it).

        ``replica``: outside a transaction it may be served by a read replica that has replayed
        every commit of this process (read-your-writes), if the database has replicas.
        """
        session = self._local.session
        if session is not None:
            session.deadline = time.monotonic() + self.timeout  # each call of a transaction has its own
            return session.execute(sql, params, fetch)
        if replica and self.replicas is not None:
            return self._read_replica(sql, params, fetch)
        return self._read(sql, params, fetch)

    def write(
        self, sql: SQL, params: Params, fetch: Fetch[T], *, refusable: bool = False, quiet: bool = False
    ) -> T:
        """Run one writing statement atomically.

        Inside a transaction it joins it: a statement the server may refuse
        (``refusable``: a constraint it checks) runs in a savepoint of its own,
        so its failure undoes it alone and the transaction goes on. Any other
        statement needs none (a subtransaction and, on PostgreSQL, a MultiXact
        each: most of a unit of work's price): it writes all or nothing, and
        fails only when the connection or a lock wait does, which ends the
        transaction anyway. Its commit wakes this process's watchers unless ``quiet``
        (a write the feed does not show).
        """
        session = self._local.session
        if session is not None:
            session.deadline = time.monotonic() + self.timeout
            if not refusable:
                return session.execute(sql, params, fetch)
            with session.savepoint():
                return session.execute(sql, params, fetch)
        result = self._write(sql, params, fetch)
        if not quiet:
            self.committed()
        return result

    # -- units of several statements ----------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads; inside a transaction, that transaction's session."""
        current = self._local.session
        if current is not None:
            current.deadline = time.monotonic() + self.timeout
            yield current
            return
        with self._read_session() as session:
            yield session

    @contextmanager
    def writing(self, *, quiet: bool = False) -> Iterator[Session]:
        """An atomic unit of work; inside another one it joins it as a savepoint.

        Its commit wakes this process's watchers unless ``quiet`` (the feed's own numbering).
        """
        current = self._local.session
        if current is not None:
            current.deadline = time.monotonic() + self.timeout
            with current.savepoint():
                yield current
            return
        with self._write_session() as session:
            self._local.session = session
            try:
                yield session
            finally:
                self._local.session = None
        if not quiet:
            self.committed()

    def wake_watchers(self) -> None:
        """Wake this process's watchers of the feed: a change may have committed."""
        self.changes.bump()

    def listen_for_changes(self) -> None:
        """Make sure something outside this process can wake its watchers (PostgreSQL: LISTEN)."""

    # -- what each dialect provides ------------------------------------------------

    @abstractmethod
    def _read(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """One reading statement outside any transaction."""

    @abstractmethod
    def _write(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """One writing statement, atomic on its own, outside any transaction."""

    def _read_replica(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        """One reading statement outside any transaction, on a replica if one may serve it."""
        return self._read(sql, params, fetch)

    @abstractmethod
    def _read_session(self) -> AbstractContextManager[Session]:
        """A session for reads outside any transaction."""

    @abstractmethod
    def _write_session(self) -> AbstractContextManager[Session]:
        """A session inside a new top-level write transaction."""

    @abstractmethod
    def migration_session(self, lock_timeout: float = 900.0) -> AbstractContextManager[Session]:
        """A session holding the migration lock, outside any transaction."""

    def migration_transaction(self, session: Session) -> AbstractContextManager[Session]:
        """The transaction one migration file runs in (a plain top-level transaction here)."""
        return session.transaction()

    @abstractmethod
    def check_migration_lock(self, session: Session) -> None:
        """Inside a migration's transaction: raise MigrationError unless the lock is really held."""

    @abstractmethod
    def split_script(self, text: str) -> list[str]:
        """Split a migration file into its statements."""

    @abstractmethod
    def _close(self) -> None:
        """Close every connection."""

    migrations_table_sql: ClassVar[str]
    """DDL of the table recording applied migrations."""

"""The SQLite dialect: the stdlib ``sqlite3`` module, one writer and many readers.

* Every write runs in our own ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the one
  writer connection, behind a process-wide lock: deferred transactions that
  read then write fail with "database is locked" under threads, whatever the
  busy timeout.
* Reads use a small pool of ``query_only`` reader connections; in WAL mode they
  never wait for the writer. A one-statement read takes the writer's connection
  instead when it is idle: a connection's page cache is dropped whenever another
  one commits, and the writer's stays warm (a read after a write: 60 us instead
  of 78, scripts/bench_langgraph.py).
* ``:memory:`` is a named ``memdb`` database kept open by the writer, so every
  connection of this object (and every thread) sees the same data.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import ClassVar, Self

from ..errors import (
    DatabaseNotFoundError,
    DatabaseUnavailableError,
    IntegrityError,
    MigrationError,
    WorkflowDBError,
)
from ..models import utc_now, utc_text
from .base import DEFAULT_POLL_INTERVAL, SQL, Database, Fetch, Params, Session, T

logger = logging.getLogger(__name__)

SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
_ONE_MICROSECOND = timedelta(microseconds=1)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _strictly_after(previous: str | None, now: str) -> str:
    """SQL function ``wf_strictly_after(previous, now)``: ``now``, or ``previous`` plus 1 us."""
    if previous is None or now > previous:
        return now
    return utc_text(datetime.fromisoformat(previous) + _ONE_MICROSECOND)


def _now() -> str:
    """SQL function ``wf_now()``: the database's clock (for SQLite, this machine's), as stored text."""
    return utc_text(utc_now())


def _seconds_from_now(seconds: float) -> str:
    """SQL function ``wf_seconds_from_now(s)``: ``wf_now()`` plus ``s`` seconds."""
    return utc_text(utc_now() + timedelta(seconds=seconds))


SQL_FUNCTIONS: tuple[tuple[str, int, Callable[..., str]], ...] = (
    ("wf_strictly_after", 2, _strictly_after),
    ("wf_now", 0, _now),
    ("wf_seconds_from_now", 1, _seconds_from_now),
)
"""The SQL functions the store's statements call, on every connection: (name, arguments, function)."""


class SQLiteSession(Session):
    """A session on one sqlite3 connection (autocommit mode, our own BEGIN)."""

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """``BEGIN IMMEDIATE``: the write lock is taken up front, waiting up to the busy timeout."""
        self.script("BEGIN IMMEDIATE")
        try:
            yield self
            self.script("COMMIT")
        except BaseException:
            if self.connection.in_transaction:
                self.connection.rollback()
            raise


class SQLiteDatabase(Database):
    """A SQLite database file (or a private in-memory database)."""

    dialect: ClassVar[str] = "sqlite"
    driver_errors = (sqlite3.Error,)
    migrations_table_sql: ClassVar[str] = """
        CREATE TABLE IF NOT EXISTS workflow_db_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            duration_ms REAL NOT NULL
        )"""

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 30.0,
        synchronous: str = "NORMAL",
        create: bool = True,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        in_memory = path == ":memory:"
        super().__init__(
            timeout, "sqlite:///" + (path if in_memory else os.path.abspath(path)), poll_interval
        )
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous: {synchronous!r} is not one of {', '.join(SYNCHRONOUS_LEVELS)}")
        if not (create or in_memory or os.path.exists(path)):
            raise DatabaseNotFoundError(
                f"no SQLite database at {os.path.abspath(path)}: `python -m workflow_db.migrate "
                f"--url {self.display_url} up` creates it"
            )
        self.path = path
        self.synchronous = synchronous.upper()
        self._in_memory = path == ":memory:"
        self._target = f"file:/workflow_db-{uuid.uuid4().hex}?vfs=memdb" if self._in_memory else path
        self._writer_lock = threading.RLock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._closed = False
        self._writer_connection = self._open(reader=False)
        if not self._in_memory:
            self._enable_wal()

    # -- connections -----------------------------------------------------------

    def _open(self, *, reader: bool) -> sqlite3.Connection:
        with self.translated_errors():  # a file, directory or file system that cannot be opened
            connection = sqlite3.connect(
                self._target,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=self._in_memory,
                cached_statements=256,
            )
            try:  # the first statements are where SQLite really opens the file
                connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                connection.execute("PRAGMA foreign_keys = ON")
                connection.execute(f"PRAGMA synchronous = {self.synchronous}")
                if reader:
                    connection.execute("PRAGMA query_only = ON")
            except sqlite3.Error:
                connection.close()
                raise
        for name, arguments, function in SQL_FUNCTIONS:
            connection.create_function(name, arguments, function, deterministic=function is _strictly_after)
        return connection

    def _enable_wal(self) -> None:
        # journal_mode=WAL does not wait on the busy timeout: retry it until the timeout.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._writer_connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise self.translate(exc) from exc
                time.sleep(0.01)

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """Hold the process-wide writer lock, waiting at most ``timeout`` for another thread's write."""
        if not self._writer_lock.acquire(timeout=self.timeout):
            raise DatabaseUnavailableError(
                f"sqlite database {self.path!r} is locked: another thread of this process kept "
                f"writing past the timeout of {self.timeout:g} s"
            )
        try:
            yield
        finally:
            self._writer_lock.release()

    def _take_reader(self) -> sqlite3.Connection:
        try:
            return self._idle_readers.pop()  # list.pop and append are atomic: no lock needed
        except IndexError:
            return self._open(reader=True)

    def _return_reader(self, connection: sqlite3.Connection) -> None:
        self._idle_readers.append(connection)
        if self._closed:
            self._close_readers()

    # The two hot paths below repeat Session.execute inline: a store read costs
    # about 10 us in all, and a Session object per call was a tenth of it.

    def _read(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        # The writer's connection when no thread holds it (outside any transaction here: a thread
        # inside one reads through its session), else a reader; the writer waits for it at most
        # one statement.
        if self._writer_lock.acquire(blocking=False):
            try:
                return fetch(self._writer_connection.execute(self.prepare(sql), params))
            except sqlite3.Error as exc:
                raise self.translate(exc) from exc
            finally:
                self._writer_lock.release()
        connection = self._take_reader()
        try:
            return fetch(connection.execute(self.prepare(sql), params))
        except sqlite3.Error as exc:
            raise self.translate(exc) from exc
        finally:
            self._return_reader(connection)

    def _write(self, sql: SQL, params: Params, fetch: Fetch[T]) -> T:
        # One statement in autocommit mode is atomic, and SQLite takes the write
        # lock when the statement starts (as BEGIN IMMEDIATE would).
        with self._writer():
            try:
                return fetch(self._writer_connection.execute(self.prepare(sql), params))
            except sqlite3.Error as exc:
                raise self.translate(exc) from exc

    @contextmanager
    def _read_session(self) -> Iterator[Session]:
        connection = self._take_reader()
        try:
            yield SQLiteSession(self, connection)
        finally:
            self._return_reader(connection)

    @contextmanager
    def _write_session(self) -> Iterator[Session]:
        with self._writer(), SQLiteSession(self, self._writer_connection).transaction() as session:
            yield session

    @contextmanager
    def migration_session(self, lock_timeout: float = 900.0) -> Iterator[Session]:
        """The writer connection, outside a transaction.

        Between processes, each file's BEGIN IMMEDIATE is the lock (it waits up to the busy timeout).
        """
        with self._writer():
            yield SQLiteSession(self, self._writer_connection)

    @contextmanager
    def migration_transaction(self, session: Session) -> Iterator[Session]:
        """Foreign keys off around the transaction and checked before COMMIT.

        SQLite's documented procedure for schema changes ALTER TABLE cannot
        make (rebuilding a table): with foreign keys on, dropping the old table
        would cascade into the rows that reference it, and the PRAGMA has no
        effect inside a transaction.
        """
        session.script("PRAGMA foreign_keys = OFF")
        try:
            with session.transaction():
                yield session
                broken = session.all("PRAGMA foreign_key_check")
                if broken:
                    table, rowid, parent, _ = broken[0]
                    raise MigrationError(
                        f"{len(broken)} row(s) would be left with a foreign key naming nothing "
                        f"(first: {table} rowid {rowid} -> {parent})"
                    )
        finally:
            session.script("PRAGMA foreign_keys = ON")

    def check_migration_lock(self, session: Session) -> None:
        """BEGIN IMMEDIATE, which each migration's transaction starts with, is the lock itself."""

    def _close(self) -> None:
        self._closed = True
        self._close_readers()
        with self._writer_lock:
            self._writer_connection.close()

    def _close_readers(self) -> None:
        while True:
            try:
                self._idle_readers.pop().close()
            except IndexError:
                return

    # -- types, SQL and errors ----------------------------------------------------

    def _convert(self, sql: str) -> str:
        return sql  # sqlite3 speaks :name natively

    def encode_time(self, value: datetime) -> str:
        """Fixed-width ISO-8601 UTC text."""
        return utc_text(value)

    def encode_json(self, text: str) -> str:
        """SQLite stores JSON as TEXT: the text as it is."""
        return text

    def split_script(self, text: str) -> list[str]:
        """Split with sqlite3.complete_statement, so trigger bodies stay whole."""
        statements: list[str] = []
        start = 0
        for index, char in enumerate(text):
            if char == ";" and sqlite3.complete_statement(text[start : index + 1]):
                statements.append(text[start : index + 1])
                start = index + 1
        statements.append(text[start:])
        return [s.strip() for s in statements if _COMMENTS.sub("", s).strip()]

    def translate(self, exc: BaseException) -> WorkflowDBError:
        """sqlite3 errors as workflow_db errors (locked/busy -> DatabaseUnavailableError)."""
        message = str(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return IntegrityError(f"sqlite refused the write: {message}")
        if isinstance(exc, sqlite3.OperationalError):
            if "locked" in message or "busy" in message:
                return DatabaseUnavailableError(
                    f"sqlite database {self.path!r} is locked: another connection held it "
                    f"past the busy timeout of {self.timeout:g} s"
                )
            if "unable to open" in message or "disk" in message or "readonly" in message:
                return DatabaseUnavailableError(f"sqlite database {self.path!r}: {message}")
        if isinstance(exc, sqlite3.ProgrammingError) and "closed database" in message:
            return DatabaseUnavailableError(f"sqlite database {self.path!r} is closed")
        return WorkflowDBError(f"sqlite: {message}")

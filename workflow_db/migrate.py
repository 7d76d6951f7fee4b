"""The numbered-SQL migration runner and its command line.

Migrations are the files ``sql/<dialect>/NNNN_name.sql`` shipped in the wheel
as ``workflow_db.sql``. Each applied file gets one row in
``workflow_db_migrations`` (version, name, checksum, applied_at, duration),
written in the same transaction as the file's statements, so a file that
fails leaves no trace. Before anything runs, every applied file is checked
against its checksum; an edited applied file, a missing one, a duplicate
number or a pending file below an applied version stops the run.

Two processes running :func:`upgrade` at once apply each file exactly once:
PostgreSQL serialises them with a session advisory lock, SQLite with
``BEGIN IMMEDIATE``; both re-read the version table under the lock.

Command line (exit 0 success, 1 failure, 2 usage error)::

    python -m workflow_db.migrate [--url URL] [up|status|plan]
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import TextIO

from . import __version__, cli
from .dialects import Database, Session
from .dialects.base_async import AsyncDatabase
from .errors import MigrationError, WorkflowDBError
from .models import stored_time
from .queries import MIGRATIONS_TABLE_EXISTS

logger = logging.getLogger(__name__)

MigrationsDirectory = Traversable | str | os.PathLike[str]
"""Where migration files are read from (default: the ones shipped in the wheel)."""

_FILE_NAME = re.compile(r"^(\d+)_(\w+)\.sql$")
_NON_TRANSACTIONAL = re.compile(r"^\s*--\s*transactional\s*:\s*false\s*$", re.IGNORECASE | re.MULTILINE)
_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "START", "ABORT"})
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)

_READ_APPLIED = "SELECT version, name, checksum, applied_at FROM workflow_db_migrations ORDER BY version"
_RECORD_APPLIED = """
    INSERT INTO workflow_db_migrations (version, name, checksum, applied_at, duration_ms)
    VALUES (:version, :name, :checksum, :applied_at, :duration_ms)"""


@dataclass(frozen=True)
class Migration:
    """One migration file, read and checked."""

    version: int
    name: str
    file_name: str
    text: str
    checksum: str
    transactional: bool
    statements: tuple[str, ...]


@dataclass(frozen=True)
class MigrationStatus:
    """One known migration as :func:`status` reports it."""

    version: int
    name: str
    applied_at: datetime | None
    checksum_ok: bool
    shipped: bool = True
    """Whether this package has the file (a newer release may have applied versions it lacks)."""

    @property
    def state(self) -> str:
        """``"applied"``, ``"pending"``, ``"modified"`` (applied, file since changed) or
        ``"newer than this package"`` (applied by a release that has a file this one lacks)."""
        if self.applied_at is None:
            return "pending"
        if not self.shipped:
            return "newer than this package"
        return "applied" if self.checksum_ok else "modified"


@dataclass(frozen=True)
class _Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def checksum(text: str) -> str:
    """``sha256:<hex>`` of a file's text after stripping a BOM and turning CRLF into LF."""
    normalised = text.removeprefix("\ufeff").replace("\r\n", "\n")
    return "sha256:" + hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def migrations_directory(db: Database) -> Traversable:
    """Where the shipped migrations for ``db``'s dialect live."""
    return _shipped(db.dialect)


def _shipped(dialect: str) -> Traversable:
    try:
        root: Traversable = resources.files("workflow_db.sql")
    except ModuleNotFoundError:  # imported from a source checkout: sql/ sits beside the package
        root = Path(__file__).resolve().parent.parent / "sql"
    return root.joinpath(dialect)


def load_migrations(db: Database, directory: MigrationsDirectory | None = None) -> list[Migration]:
    """Read and check the migration files for ``db``'s dialect, in version order."""
    if directory is None:
        folder: Traversable = migrations_directory(db)
    elif isinstance(directory, str | os.PathLike):
        folder = Path(directory)
    else:
        folder = directory
    migrations: dict[int, Migration] = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"{entry.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{entry.name}: version {version} is also {migrations[version].file_name}")
        text = entry.read_text(encoding="utf-8")
        statements = tuple(db.split_script(text.removeprefix("\ufeff")))
        for statement in statements:
            keyword = _LEADING_COMMENTS.sub("", statement).split(None, 1)[0].rstrip(";").upper()
            if keyword in _TRANSACTION_CONTROL:
                raise MigrationError(
                    f"{entry.name}: has its own {keyword}; the runner wraps each file in a "
                    "transaction (use '-- transactional: false' for statements that cannot run in one)"
                )
        migrations[version] = Migration(
            version=version,
            name=match.group(2),
            file_name=entry.name,
            text=text,
            checksum=checksum(text),
            transactional=_NON_TRANSACTIONAL.search(text) is None,
            statements=statements,
        )
    return [migrations[version] for version in sorted(migrations)]


def _read_applied(db: Database, session: Session) -> dict[int, _Applied]:
    if session.one(MIGRATIONS_TABLE_EXISTS) is None:
        return {}
    return {
        version: _Applied(version, name, digest, stored_time(applied_at))
        for version, name, digest, applied_at in session.all(_READ_APPLIED)
    }


def _pending(migrations: Sequence[Migration], applied: dict[int, _Applied]) -> list[Migration]:
    """The migrations still to run; raises MigrationError if the history does not fit the files."""
    known = {migration.version: migration for migration in migrations}
    for version, row in applied.items():
        if version not in known:
            raise MigrationError(f"version {version} ({row.name}) is applied but its file is missing")
        if known[version].checksum != row.checksum:
            raise MigrationError(
                f"{known[version].file_name} was changed after it was applied: "
                f"applied {row.checksum}, file now {known[version].checksum}"
            )
    pending = [migration for migration in migrations if migration.version not in applied]
    newest_applied = max(applied, default=0)
    for migration in pending:
        if migration.version < newest_applied:
            raise MigrationError(
                f"{migration.file_name} is pending but the later version {newest_applied} "
                "is already applied; renumber it after the applied versions"
            )
    return pending


def status(db: Database, *, directory: MigrationsDirectory | None = None) -> list[MigrationStatus]:
    """One row per known migration (files and applied versions); writes nothing."""
    migrations = {m.version: m for m in load_migrations(db, directory)}
    with db.reading() as session:
        applied = _read_applied(db, session)
    rows = []
    for version in sorted(migrations.keys() | applied.keys()):
        migration, row = migrations.get(version), applied.get(version)
        rows.append(
            MigrationStatus(
                version=version,
                name=migration.name if migration else row.name,  # type: ignore[union-attr]
                applied_at=row.applied_at if row else None,
                checksum_ok=row is None or (migration is not None and migration.checksum == row.checksum),
                shipped=migration is not None,
            )
        )
    return rows


@functools.cache
def _newest_shipped(dialect: str) -> int:
    return max((int(match.group(1)) for entry in _shipped(dialect).iterdir()
                if (match := _FILE_NAME.match(entry.name))), default=0)  # fmt: skip


def require_current(db: Database | AsyncDatabase) -> None:
    """Raise MigrationError, naming the command to run, unless every shipped migration is applied.

    A database migrated further than this version of workflow_db knows is
    fine (a newer release deployed its migrations before this process was
    replaced). One round trip, made when a store is created; an
    :class:`AsyncDatabase` read its version when it was opened.
    """
    needed = _newest_shipped(db.dialect)
    if isinstance(db, AsyncDatabase):
        applied = db.schema_version
    else:
        with db.reading() as session:
            applied = max(_read_applied(db, session), default=0)
    if applied < needed:
        state = "has no workflow_db schema" if applied == 0 else f"is at schema version {applied}"
        raise MigrationError(
            f"the database {db.display_url} {state}; this workflow_db needs version {needed}: "
            f"run `python -m workflow_db.migrate --url {db.display_url} up` first"
        )


def plan(db: Database, *, directory: MigrationsDirectory | None = None) -> list[Migration]:
    """The migrations :func:`upgrade` would apply now, in order; writes nothing."""
    migrations = load_migrations(db, directory)
    with db.reading() as session:
        return _pending(migrations, _read_applied(db, session))


def upgrade(
    db: Database,
    *,
    directory: MigrationsDirectory | None = None,
    lock_timeout: float = 900.0,
) -> list[int]:
    """Apply every pending migration; return the versions applied now ([] when up to date)."""
    migrations = load_migrations(db, directory)
    applied_now: list[int] = []
    with db.migration_session(lock_timeout) as session:
        with session.transaction():
            session.script(db.migrations_table_sql)
        for migration in _pending(migrations, _read_applied(db, session)):
            if _apply(db, session, migration):
                applied_now.append(migration.version)
    return applied_now


def _apply(db: Database, session: Session, migration: Migration) -> bool:
    """Apply one file unless another process already did; True if applied here."""
    started = time.perf_counter()
    try:
        if migration.transactional:
            with db.migration_transaction(session):
                db.check_migration_lock(session)
                if migration.version in _read_applied(db, session):
                    return False
                for statement in migration.statements:
                    session.script(statement)
                _record(db, session, migration, started)
        else:
            with session.transaction():
                db.check_migration_lock(session)
                if migration.version in _read_applied(db, session):
                    return False
            for statement in migration.statements:
                session.script(statement)
            with session.transaction():
                _record(db, session, migration, started)
    except WorkflowDBError as exc:
        kept = "nothing of it was applied" if migration.transactional else "it ran outside a transaction"
        raise MigrationError(f"{migration.file_name} failed ({kept}): {exc}") from exc
    logger.info("applied %s in %.1f ms", migration.file_name, (time.perf_counter() - started) * 1000)
    return True


def _record(db: Database, session: Session, migration: Migration, started: float) -> None:
    session.run(
        _RECORD_APPLIED,
        {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "applied_at": db.encode_time(datetime.now(UTC)),
            "duration_ms": (time.perf_counter() - started) * 1000,
        },
    )


# -- command line -------------------------------------------------------------------


def _print_status(db: Database, out: TextIO, absent: str | None) -> int:
    rows = status(db)
    out.write(f"database {absent} does not exist yet\n" if absent else f"database {db.display_url}\n")
    out.write(f"{'version':>7}  {'name':<32}  {'applied at':<32}  state\n")
    for row in rows:
        applied_at = row.applied_at.isoformat(sep=" ", timespec="seconds") if row.applied_at else "-"
        out.write(f"{row.version:>7}  {row.name:<32}  {applied_at:<32}  {row.state}\n")
    modified = [row for row in rows if row.state == "modified"]
    if modified:
        out.write(f"{len(modified)} applied file(s) changed since they were applied\n")
    newer = [row for row in rows if row.state == "newer than this package"]
    if newer:
        out.write(f"{len(newer)} applied migration(s) newer than this package (workflow_db {__version__})\n")
    return 0


def _print_plan(db: Database, out: TextIO, absent: str | None) -> int:
    pending = plan(db)
    if absent:
        out.write(f"-- database {absent} does not exist yet: `up` creates it and applies every migration\n")
    if not pending:
        out.write("-- nothing to apply: the database is up to date\n")
    for migration in pending:
        out.write(f"-- {migration.file_name} ({migration.checksum})\n{migration.text.rstrip()}\n\n")
    return 0


def _upgrade(db: Database, out: TextIO, absent: str | None) -> int:
    applied = upgrade(db)
    if applied:
        out.write(f"applied {len(applied)} migration(s): {applied} to {db.display_url}\n")
    else:
        out.write(f"database {db.display_url} is up to date\n")
    return 0


_COMMANDS = {"up": _upgrade, "status": _print_status, "plan": _print_plan}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 usage error)."""
    parser = cli.parser_for(
        "python -m workflow_db.migrate", "Apply or inspect workflow_db's numbered SQL migrations."
    )
    parser.add_argument(
        "command", nargs="?", default="up", choices=sorted(_COMMANDS),
        help="up: apply pending migrations (default); status: list them; plan: print the SQL up would run",
    )  # fmt: skip
    return cli.run(
        parser,
        argv,
        lambda db, args: _COMMANDS[args.command](db, out or sys.stdout, args.absent),
        creates_database=lambda args: args.command == "up",  # plan and status change nothing...
        empty_if_absent=lambda args: args.command != "up",  # ...and show a database not there yet as empty
    )


if __name__ == "__main__":
    sys.exit(main())

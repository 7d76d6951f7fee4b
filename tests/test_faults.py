"""Faults: killed backends, a stopped server, a locked SQLite file, a migrator killed mid-file.

Each is one database's own failure, so each test names the database it needs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import PostgresServer, require_pg
from factories import SHIPPED_VERSIONS, make_graph, present
from pg_cluster import ThrowawayCluster

from workflow_db import (
    Database,
    DatabaseUnavailableError,
    WorkflowDBError,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    WorkflowStore,
    connect,
)
from workflow_db.migrate import status, upgrade


class KillableStore(WorkflowStore):
    """A store that can have its server sessions killed under it."""

    def __init__(self, db: Database, server: PostgresServer, database: str) -> None:
        super().__init__(db)
        self.server = server
        self.database = database

    def terminate_others(self) -> int:
        """Kill every server session on the store's database (but the admin's); return how many."""
        return terminate_backends(self.server, self.database)


@pytest.fixture
def pg_store(pg_server: PostgresServer | None) -> Iterator[KillableStore]:
    """A store on a fresh PostgreSQL database, connected directly (not through a pooler)."""
    server = require_pg(pg_server)
    name = server.create_database(template=server.template)
    with connect(server.url_for(name), min_size=2, max_size=2, timeout=10) as db:
        yield KillableStore(db, server, name)
    server.drop_database(name)


def terminate_backends(server: PostgresServer, database: str) -> int:
    """Kill every server session on ``database``; return how many (waits until they are gone)."""
    with server.admin() as admin:
        row = admin.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()) AS killed",
            (database,),
        ).fetchone()
    return int(str(row[0])) if row else 0


def test_killed_backend_between_calls_is_replaced(pg_store: KillableStore) -> None:
    graph = make_graph(pg_store, "p", "a")
    run = pg_store.create_run(graph.id)
    assert pg_store.terminate_others() >= 1
    assert pg_store.get_run(run.id) == run  # the pool noticed and handed out a new connection
    assert present(pg_store.update_run_status(run.id, "running")).status is WorkflowRunStatus.RUNNING
    assert pg_store.terminate_others() >= 1
    assert pg_store.set_node_state(run.id, "a", progress=0.5).status is WorkflowNodeStatus.RUNNING


def test_killed_backend_inside_a_transaction(pg_store: KillableStore) -> None:
    graph = make_graph(pg_store, "p", "a")
    run = pg_store.create_run(graph.id)
    with pytest.raises(DatabaseUnavailableError), pg_store.transaction():
        pg_store.update_run_status(run.id, "completed", last_message="half")
        pg_store.create_run(graph.id, id="inside")
        pg_store.terminate_others()
        pg_store.set_node_state(run.id, "a", status="completed")
    assert pg_store.get_run(run.id) == run  # nothing of the transaction stayed
    assert pg_store.get_run("inside") is None
    assert present(pg_store.get_node_state(run.id, "a")).status is WorkflowNodeStatus.PENDING


def test_stopped_server_is_unavailable_then_back(tmp_path: Path) -> None:
    cluster = ThrowawayCluster.start(tmp_path)
    if cluster is None:
        require_pg(None)  # skips, or fails under CI=true
        return
    try:
        with connect(cluster.url, min_size=1, max_size=2, timeout=3) as db:
            upgrade(db)
            store = WorkflowStore(db)
            graph = make_graph(store, "p", "a")
            run = store.create_run(graph.id)
            cluster.stop()
            with pytest.raises(
                DatabaseUnavailableError, match=r"PostgreSQL at postgresql://postgres@127\.0\.0\.1"
            ):
                store.get_run(run.id)
            with pytest.raises(DatabaseUnavailableError):
                store.update_run_status(run.id, "running")
            cluster.resume()
            db.timeout = 15.0  # the pool reconnects with backoff: wait long enough for it
            assert store.get_run(run.id) == run  # the same Database works again
            assert present(store.update_run_status(run.id, "running")).status is WorkflowRunStatus.RUNNING
    finally:
        cluster.remove()


HOLD_WRITE_LOCK = textwrap.dedent(
    """
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("UPDATE workflow_runs SET last_message = 'held'")
    print("locked", flush=True)
    sys.stdin.readline()
    connection.execute("ROLLBACK")
    """
)


def test_sqlite_file_locked_past_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with connect(f"sqlite:///{path}", timeout=0.3) as db:
        upgrade(db)
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a")
        run = store.create_run(graph.id)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_WRITE_LOCK, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            with pytest.raises(DatabaseUnavailableError, match=r"is locked: another connection held it past"):
                store.update_run_status(run.id, "running", last_message="mine")
            with pytest.raises(DatabaseUnavailableError, match="locked"), store.transaction():
                store.create_run(graph.id, id="never")
            assert store.get_run(run.id) == run  # readers are not blocked in WAL mode
        finally:
            holder.communicate("\n", timeout=30)
        assert store.get_run(run.id) == run and store.get_run("never") is None
        assert present(store.update_run_status(run.id, "running")).status is WorkflowRunStatus.RUNNING


MIGRATE_SLOWLY = textwrap.dedent(
    """
    import logging, sys
    from workflow_db import connect
    from workflow_db.migrate import upgrade
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    with connect(sys.argv[1]) as db:
        upgrade(db, directory=sys.argv[2])
    """
)
SLOW_FILE = {
    "sqlite": "CREATE TABLE second (id INTEGER PRIMARY KEY);\n"
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)\n"
    "SELECT count(*) FROM c;\n",
    "postgresql": "CREATE TABLE second (id integer PRIMARY KEY);\nSELECT pg_sleep(2);\n",
}


def test_migrator_killed_mid_file(blank_url: str, dialect: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_first.sql").write_text("CREATE TABLE first (id integer PRIMARY KEY);\n")
    (folder / "0002_second.sql").write_text(SLOW_FILE[dialect])
    child = subprocess.Popen(
        [sys.executable, "-c", MIGRATE_SLOWLY, blank_url, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().startswith("applied 0001_first.sql")  # now inside 0002
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with connect(blank_url) as db:
        assert [r.state for r in status(db, directory=folder)] == ["applied", "pending"]
        assert upgrade(db, directory=folder) == [2]  # waits for the dead session's lock, if any
        assert upgrade(db, directory=folder) == []
        with db.reading() as session:
            rows = session.all("SELECT version FROM workflow_db_migrations ORDER BY version")
        assert [row[0] for row in rows] == [1, 2]


@pytest.mark.pgbouncer
def test_migrator_through_pgbouncer_never_applies_twice(pg_server: PostgresServer | None) -> None:
    """Pointing the migrator at PgBouncer in transaction mode is a mistake; it must not corrupt anything."""
    server = require_pg(pg_server)
    name = server.create_database()
    url = server.client_url_for(name)
    outcomes: list[object] = []

    def migrate() -> None:
        try:
            with connect(url) as db:
                outcomes.append(upgrade(db, lock_timeout=5))
        except WorkflowDBError as exc:  # refused, or lost a race it could not see: never corrupts
            outcomes.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        applied = [v for outcome in outcomes if isinstance(outcome, list) for v in outcome]
        assert len(outcomes) == 3 and len(applied) == len(set(applied))  # none applied twice
        with connect(server.url_for(name)) as db:
            with db.reading() as session:
                recorded = session.one("SELECT to_regclass('workflow_db_migrations') IS NOT NULL")
                runs_table = session.one("SELECT to_regclass('workflow_runs') IS NOT NULL")
            assert recorded is not None and runs_table is not None
            assert runs_table[0] == (1 in applied)  # the schema is there exactly when it was recorded
            # The session lock may still sit on a server connection PgBouncer keeps: end those
            # sessions (what restarting PgBouncer does), then a direct migrator finishes the job.
            terminate_backends(server, name)
            assert upgrade(db, lock_timeout=30) == [v for v in SHIPPED_VERSIONS if v not in applied]
            assert [row.state for row in status(db)] == ["applied"] * len(SHIPPED_VERSIONS)
    finally:
        server.drop_database(name)


def test_no_password_in_any_error_or_log(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """Every failure path of a PostgreSQL URL with a password: it never shows."""
    from pg_cluster import free_port

    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-Pa55"
    messages: list[str] = []
    caught: list[Exception] = []
    for url in (
        f"postgresql://admin:{secret}@127.0.0.1:{free_port()}/db",
        f"postgresql://admin:{secret}@127.0.0.1:notaport/db",
        f"mysql://admin:{secret}@127.0.0.1/db",
        f"postgresql://admin:{secret}@127.0.0.1:5432/db?sslmode=bogus",
        f"postgresql://admin:{secret}@127.0.0.1:5432/db?prepare_threshold=often",
    ):
        try:
            connect(url, timeout=1).close()
        except (ValueError, DatabaseUnavailableError) as exc:
            caught.append(exc)
            messages.append(str(exc))
            messages.extend(str(cause) for cause in (exc.__cause__, exc.__context__) if cause is not None)
    from workflow_db.migrate import main

    assert main(["--url", f"postgresql://admin:{secret}@127.0.0.1:{free_port()}/db", "--timeout", "1"]) == 1
    assert len(caught) == 5
    assert all(secret not in message for message in messages), messages
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_a_write_that_waited_for_an_append_returns_the_node_state_whole(pg_urls: tuple[str, str]) -> None:
    """An append commits while set_node_state waits for the row: the write's RETURNING reads the
    message rows in its statement's older snapshot, where the appended one is not yet (it was NULL
    messages, and decoding the record failed)."""
    url, direct = pg_urls
    with connect(url) as db:
        store = WorkflowStore(db)
        run = store.create_run(make_graph(store).id)
        appended, release = threading.Event(), threading.Event()

        def append_then_wait() -> None:
            with store.transaction():
                store.append_node_message(run.id, "a", "first")
                appended.set()
                assert release.wait(30)

        holder = threading.Thread(target=append_then_wait)
        holder.start()
        assert appended.wait(30)
        written: list[object] = []
        writer = threading.Thread(
            target=lambda: written.append(store.set_node_state(run.id, "a", progress=0.7))
        )
        writer.start()
        with psycopg.connect(direct, autocommit=True) as watcher:
            deadline = time.monotonic() + 30
            waiting = "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            waiting += " AND datname = current_database()"
            while watcher.execute(waiting).fetchone() is None:
                assert time.monotonic() < deadline, "set_node_state never waited for the row"
                time.sleep(0.01)  # polling a state, not waiting out a race
        release.set()
        holder.join(30)
        writer.join(30)
        state = present(written[0])
        assert isinstance(state, WorkflowNodeState)
        assert state.progress == 0.7 and isinstance(state.messages, list)
        assert present(store.get_node_state(run.id, "a")).messages == ["first"]

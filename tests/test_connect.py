"""connect(): URL forms, errors that never show a password, unreachable servers."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from conftest import PostgresServer, require_pg
from factories import make_graph, run_threads
from pg_cluster import free_port

from workflow_db import AsyncWorkflowStore, DatabaseUnavailableError, WorkflowStore, connect, connect_async
from workflow_db.dialects import redact_url
from workflow_db.dialects.base import fetch_one
from workflow_db.dialects.replicas import replica_urls_from_environment
from workflow_db.migrate import upgrade


def test_sqlite_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with connect("sqlite:///relative.db") as db:
        assert db.dialect == "sqlite"
        upgrade(db)
    assert (tmp_path / "relative.db").exists()
    absolute = tmp_path / "sub" / "absolute.db"
    absolute.parent.mkdir()
    with connect(f"sqlite:///{absolute}") as db:
        upgrade(db)
    assert absolute.exists()


def test_default_url_comes_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKFLOW_DB_URL", f"sqlite:///{tmp_path / 'from_env.db'}")
    with connect() as db:
        upgrade(db)
    assert (tmp_path / "from_env.db").exists()
    monkeypatch.delenv("WORKFLOW_DB_URL")
    with connect() as db:
        assert db.dialect == "sqlite"
        upgrade(db)
    assert (tmp_path / "workflow.db").exists()


def test_memory_database_is_private_and_shared_by_threads() -> None:
    with connect("sqlite:///:memory:") as db, connect("sqlite:///:memory:") as other:
        upgrade(db)
        upgrade(other)
        store = WorkflowStore(db)
        graph = make_graph(store)
        errors = run_threads(8, lambda _: [store.create_run(graph.id) for _ in range(10)])
        assert errors == []
        assert store.count_runs() == 80
        assert WorkflowStore(other).count_runs() == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root:s3cret@localhost/db", "scheme 'mysql' is not supported"),
        ("s3cret", "no scheme"),
        ("sqlite://host/file.db", "malformed sqlite URL"),
        ("sqlite:///", "malformed sqlite URL"),
        ("postgresql://root:s3cret@localhost:99999999/db", "malformed postgresql URL"),
        ("postgresql://root:s3cret@localhost:port/db", "malformed postgresql URL"),
    ],
)
def test_bad_urls_are_value_errors_without_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        connect(url)
    assert "s3cret" not in str(caught.value)


def test_sqlite_directory_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailableError, match="unable to open"):
        connect(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


def test_unreachable_postgresql_is_quick_and_clear(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://admin:s3cret@127.0.0.1:{free_port()}/db"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DatabaseUnavailableError, match="did not accept a connection within 1 s") as caught:
        connect(url, timeout=1)
    assert "admin:***@127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert all("s3cret" not in record.getMessage() for record in caplog.records)


def test_postgres_scheme_alias(pg_server: PostgresServer | None) -> None:
    server = require_pg(pg_server)
    url = server.url_for(server.template).replace("postgresql://", "postgres://", 1)
    with connect(url, min_size=1, max_size=2, timeout=5) as db:
        assert db.dialect == "postgresql"
        assert WorkflowStore(db).count_runs() == 0


def test_failed_login_never_shows_the_password(pg_server: PostgresServer | None) -> None:
    server = require_pg(pg_server)
    parts = urlsplit(server.url)
    netloc = f"{parts.username}:s3cret@{parts.hostname}:{parts.port or 5432}"
    url = parts._replace(netloc=netloc, path="/no_such_database_here").geturl()
    with pytest.raises(DatabaseUnavailableError) as caught:
        connect(url, timeout=2)
    assert "s3cret" not in str(caught.value) and ":***@" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_size": 3, "max_size": 2}, "pool size"),
        ({"max_size": 0}, "pool size"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_pool_options_are_value_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect("postgresql://u:s3cret@127.0.0.1/db", **options)


def test_prepare_threshold_in_the_url(pg_server: PostgresServer | None) -> None:
    """?prepare_threshold=none (for PgBouncer) is ours: taken off the URL before libpq sees it."""
    server = require_pg(pg_server)
    url = server.url_for(server.template) + "?prepare_threshold=none"
    with connect(url) as db:
        store = WorkflowStore(db)
        for _ in range(8):  # more than psycopg's default threshold of 5
            assert store.count_runs(project_id="p") == 0
        with db.reading() as session:
            assert session.connection.prepare_threshold is None
    with pytest.raises(ValueError, match="prepare_threshold in the URL"):
        connect(server.url_for(server.template) + "?prepare_threshold=sometimes")


SECRET = "s3cr/t#Pa?5s"  # what a URL parser would cut at: an unencoded /, # and ?


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SECRET}@db:5432/wf", "postgresql://app:***@db:5432/wf"),
        ("postgresql://app:p%2Fw@db/wf", "postgresql://app:***@db/wf"),
        (
            "postgresql://app@db/wf?password=s3cret&sslmode=require",
            "postgresql://app@db/wf?password=***&sslmode=require",
        ),
        (
            "postgresql://db/wf?sslmode=require&sslpassword=s3cret",
            "postgresql://db/wf?sslmode=require&sslpassword=***",
        ),
        ("postgresql://app:@db/wf", "postgresql://app:***@db/wf"),
        ("postgresql://app@db/wf?pass%77ord=s3cret", "postgresql://app@db/wf?pass%77ord=***"),
        ("postgresql://db/wf?SSLPassword=s3cret&x=1", "postgresql://db/wf?SSLPassword=***&x=1"),
        ("host=db password=s3cret dbname=wf", "host=db password=*** dbname=wf"),
        ("host=db password = 's3 cr\\'et' dbname=wf", "host=db password = *** dbname=wf"),
        ("postgresql://app@db/wf", "postgresql://app@db/wf"),
        ("sqlite:///workflow.db", "sqlite:///workflow.db"),
    ],
)
def test_every_password_form_libpq_reads_is_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def _refused_urls(server: PostgresServer) -> list[str]:
    parts = urlsplit(server.url)
    host = f"{parts.hostname}:{parts.port or 5432}"
    secret = quote(SECRET, safe="")  # libpq reads a password with / # ? only percent-encoded
    return [
        f"postgresql://nobody:{secret}@{host}/postgres",
        f"postgresql://nobody@{host}/postgres?password={secret}",
        f"postgresql://{parts.username}:{secret}@{host}/no_such_database_here",
    ]


def test_a_refused_login_fails_at_once_with_the_servers_reason(
    pg_server: PostgresServer | None, caplog: pytest.LogCaptureFixture
) -> None:
    server = require_pg(pg_server)
    caplog.set_level(logging.DEBUG)
    reasons = [
        'role "nobody" does not exist',
        'role "nobody" does not exist',
        'database "no_such_database_here"',
    ]
    for url, reason in zip(_refused_urls(server), reasons, strict=True):
        # A timeout no test run would sit out: a retried login would hang here, not pass.
        with pytest.raises(DatabaseUnavailableError, match="refused the login: " + reason) as caught:
            connect(url, timeout=3600)
        assert SECRET not in str(caught.value) and "***" in str(caught.value)
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]  # no pool retries, no log spray
    assert all(SECRET not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("cli", ["workflow_db.migrate", "workflow_db.importer"])
def test_the_command_lines_print_one_line_without_the_password(
    pg_server: PostgresServer | None, cli: str, tmp_path: Path
) -> None:
    server = require_pg(pg_server)
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text("{}")
    parts = urlsplit(server.url)
    unreachable = f"postgresql://app:{quote(SECRET, safe='')}@127.0.0.1:{free_port()}/db?sslpassword={SECRET}"
    malformed = f"postgresql://app:{SECRET}@127.0.0.1/db"  # unencoded: libpq cannot read it (exit 2)
    for url in [*_refused_urls(server), unreachable, malformed]:
        argv = [sys.executable, "-m", cli, "--url", url, "--timeout", "1"]
        result = subprocess.run([*argv, *([str(snapshot)] if cli.endswith("importer") else [])],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == (2 if url == malformed else 1)
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
        assert SECRET not in result.stderr and quote(SECRET, safe="") not in result.stderr
        assert "***" in result.stderr or url == malformed
    assert parts.hostname  # the refused URLs reached the real server


@pytest.mark.parametrize("where", ["a directory", "inside a file"])
def test_a_sqlite_path_that_cannot_be_opened_is_unavailable_naming_it(tmp_path: Path, where: str) -> None:
    """The environment's own faults are ours to name: never a sqlite3 exception, at connect."""
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path if where == "a directory" else tmp_path / "file" / "workflow.db"
    with pytest.raises(DatabaseUnavailableError, match=f"sqlite database '{path}'") as refused:
        connect(f"sqlite:///{path}")
    assert refused.value.__cause__ is not None and "sqlite3" in type(refused.value.__cause__).__module__

    async def open_async() -> None:
        await connect_async(f"sqlite:///{path}")

    with pytest.raises(DatabaseUnavailableError, match=f"sqlite database '{path}'"):
        asyncio.run(open_async())


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://app:s3cret@127.0.0.1:1/db?sslmode=bogus", "sslmode='bogus'"),
        ("postgresql://app:s3cret@127.0.0.1:1/db?target_session_attrs=writable", "target_session_attrs"),
        ("postgresql://app:s3cret@127.0.0.1:1/db?foo=bar", 'unknown parameter "foo"'),
        ("postgresql://app:s3cret@127.0.0.1:port/db", "port='port'"),
        ("postgresql://app:s3cret@127.0.0.1:1,127.0.0.1:99999/db", "port='1,99999'"),
    ],
)
def test_parameters_libpq_refuses_are_value_errors_at_once(url: str, named: str) -> None:
    """Not retried until the timeout as if the server were down; no password, no driver error attached."""
    for opening in (lambda: connect(url, timeout=60), lambda: asyncio.run(_open_async(url))):
        with pytest.raises(ValueError, match=re.escape(named)) as refused:
            opening()
        assert "s3cret" not in str(refused.value)
        assert refused.value.__cause__ is None and refused.value.__context__ is None


async def _open_async(url: str) -> None:
    db = await connect_async(url, timeout=60)
    await db.close()


def test_a_value_libpq_refuses_at_login_is_a_value_error(pg_server: PostgresServer | None) -> None:
    server = require_pg(pg_server)
    url = server.url_for("postgres") + ("&" if "?" in server.url else "?") + "keepalives=abc"
    with pytest.raises(ValueError, match='invalid integer value "abc" for connection option "keepalives"'):
        connect(url, timeout=60)


def test_a_multi_host_url_finds_the_server_that_answers(pg_server: PostgresServer | None) -> None:
    """libpq's failover form: the first host is down, the second answers as read-write."""
    server = require_pg(pg_server)
    parts = urlsplit(server.url_for("postgres"))
    user = f"{parts.username}@" if parts.username else ""
    netloc = f"{user}127.0.0.1:{free_port()},{parts.hostname}:{parts.port or 5432}"
    url = parts._replace(netloc=netloc, query="target_session_attrs=read-write").geturl()
    with connect(url, timeout=30) as db:
        assert db.read("SELECT 1", {}, fetch_one) == (1,)


def test_secrets_never_show_in_a_listen_url_or_a_command_line_verb(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        connect("postgresql://app@127.0.0.1:1/db", listen_url="host=h password=s3cret dbname=x")
    assert "s3cret" not in str(refused.value) and "password=***" in str(refused.value)
    result = subprocess.run(
        [sys.executable, "-m", "workflow_db.migrate", "postgresql://app:s3cret@127.0.0.1:1/db"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert "s3cret" not in result.stderr and "postgresql://app:***@127.0.0.1:1/db" in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"replica_urls": "postgresql://r/db"},
            "replica_urls: expected a list of postgresql:// URLs, got str",
        ),
        ({"replica_urls": ["sqlite:///r.db"]}, r"replica_urls\[0\]: expected a postgresql:// URL"),
        ({"replica_urls": ["postgresql://u:s3cret@r/db", 5]}, r"replica_urls\[1\]: .* got int"),
        ({"replica_urls": ["postgresql://u:s3cret@r/db?sslmode=maybe"]}, r"replica_urls\[0\]: sslmode="),
        ({"replica_wait": -1}, "replica_wait: expected a number of seconds, 0 or more"),
    ],
)
def test_bad_replica_options_are_value_errors_without_password(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        connect("postgresql://u:s3cret@127.0.0.1:1/db", **options)
    assert "s3cret" not in str(refused.value)


def test_replicas_are_for_postgresql_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"replica_urls .* only for PostgreSQL"):
        connect(f"sqlite:///{tmp_path / 'a.db'}", replica_urls=["postgresql://r/db"])
    monkeypatch.setenv("WORKFLOW_DB_REPLICA_URLS", "postgresql://r/db")
    with pytest.raises(ValueError, match=r"\$WORKFLOW_DB_REPLICA_URLS\): only for PostgreSQL"):
        connect(f"sqlite:///{tmp_path / 'a.db'}")
    with connect(f"sqlite:///{tmp_path / 'a.db'}", replica_urls=[]) as db:  # none given: none taken
        assert db.replicas is None


def test_replica_urls_from_the_environment_keep_multi_host_urls_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "WORKFLOW_DB_REPLICA_URLS",
        "postgresql://u@r1:5432,r2:5433/db?target_session_attrs=standby , postgres://u@r3/db",
    )
    assert replica_urls_from_environment() == [
        "postgresql://u@r1:5432,r2:5433/db?target_session_attrs=standby",
        "postgres://u@r3/db",
    ]
    monkeypatch.setenv("WORKFLOW_DB_REPLICA_URLS", " ")
    assert replica_urls_from_environment() == []


def test_a_replica_that_is_down_leaves_every_read_to_the_primary(
    pg_urls: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Connecting does not wait for it; the first read that tries it logs why, later ones skip it."""
    url, _ = pg_urls
    down = f"postgresql://nobody:s3cret@127.0.0.1:{free_port()}/db"
    with caplog.at_level(logging.WARNING), connect(url, replica_urls=[down]) as db:
        store = WorkflowStore(db)
        graph = make_graph(store)
        run = store.create_run(graph.id)
        assert [store.get_run(run.id) for _ in range(3)] == [run] * 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "workflow_db.dialects.replicas"]
    assert len(warnings) == 1 and "no connection within 0.05 s" in warnings[0]
    assert "nobody:***@" in warnings[0] and all("s3cret" not in r.getMessage() for r in caplog.records)


def test_the_async_store_reads_from_the_primary_when_its_replica_is_down(pg_urls: tuple[str, str]) -> None:
    url, _ = pg_urls
    down = f"postgresql://nobody@127.0.0.1:{free_port()}/db"

    async def body() -> None:
        async with connect_async(url, replica_urls=[down]) as db:
            store = AsyncWorkflowStore(db)
            await store.ensure_project("p")
            assert [(await store.get_project("p")) is not None for _ in range(3)] == [True] * 3

    asyncio.run(body())

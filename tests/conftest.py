"""Fixtures: every behaviour test runs on SQLite and on a real PostgreSQL.

The PostgreSQL server is, in order: ``$WORKFLOW_DB_TEST_PG_URL``; a server on
127.0.0.1:5432 if one answers; a throw-away cluster started with the local
``initdb``/``pg_ctl``. Without any, PostgreSQL tests skip with the reason --
except under ``CI=true``, where that is a failure. Each test gets a fresh
database cloned from a migrated template, dropped afterwards.
"""

from __future__ import annotations

import functools
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import psycopg
import pytest
from blocking import BlockingStore, LoopThread
from hypothesis import HealthCheck, settings
from pg_cluster import ThrowawayCluster, find_server
from psycopg import sql

from workflow_db import AsyncDatabase, AsyncWorkflowStore, Database, WorkflowStore, connect, connect_async
from workflow_db.migrate import upgrade

DIALECTS = ("sqlite", "postgresql")
STORE_KINDS = ("sync", "async")
_counter = itertools.count()

# Hypothesis: CI runs 200 examples (state-machine sequences) per test and database; locally 25.
_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=200, stateful_step_count=20, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.register_profile(
    "dev", max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=_SLOW_IS_FINE
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)


class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"wfdb_test_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def url_for(self, database: str) -> str:
        """A direct URL to ``database`` (migrations and administration)."""
        return urlsplit(self.url)._replace(path=f"/{database}").geturl()

    def client_url_for(self, database: str) -> str:
        """The URL the store uses: through PgBouncer when ``$WORKFLOW_DB_TEST_PGBOUNCER`` names one."""
        pooler = os.environ.get("WORKFLOW_DB_TEST_PGBOUNCER")
        if not pooler:
            return self.url_for(database)
        parts = urlsplit(self.url)
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}{pooler}/{database}?prepare_threshold=none"

    def create_database(self, template: str = "template0") -> str:
        name = f"{self.prefix}_{next(_counter)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def create_template(self) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        with connect(self.url_for(self.template)) as db:
            upgrade(db)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a PostgreSQL server ``postgresql`` (tox selects on it)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("dialect") if callspec else None
        if param == "postgresql" or (param is None and "pg_server" in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer | None]:
    url = find_server()
    cluster = None
    if url is None:
        cluster = ThrowawayCluster.start(tmp_path_factory.mktemp("pgcluster"))
        url = cluster.url if cluster else None
    if url is None:
        yield None
        return
    server = PostgresServer(url)
    server.create_template()
    try:
        yield server
    finally:
        server.drop_database(server.template)
        if cluster is not None:
            cluster.remove()


def require_pg(server: PostgresServer | None) -> PostgresServer:
    """The server, or skip (fail under CI=true) when there is none."""
    if server is None:
        reason = "no PostgreSQL server: set WORKFLOW_DB_TEST_PG_URL or install initdb/pg_ctl"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return server


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _pg(request: pytest.FixtureRequest) -> PostgresServer:
    # Looked up only for the postgresql side, so SQLite-only runs never touch a server.
    return require_pg(request.getfixturevalue("pg_server"))


@pytest.fixture
def blank_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of an empty, unmigrated database."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    server = _pg(request)
    name = server.create_database()
    yield server.url_for(name)
    server.drop_database(name)


@pytest.fixture
def db_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh database with every migration applied."""
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'workflow.db'}"
        with connect(url) as db:
            upgrade(db)
        yield url
        return
    server = _pg(request)
    name = server.create_database(template=server.template)
    yield server.client_url_for(name)
    server.drop_database(name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    with connect(db_url) as database:
        yield database


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """``sync``: WorkflowStore; ``async``: AsyncWorkflowStore (through tests/blocking.py)."""
    return str(request.param)


MakeStore = Callable[..., WorkflowStore]


@pytest.fixture
def make_store(db: Database, db_url: str, store_kind: str) -> Iterator[MakeStore]:
    """``make_store(max_json_bytes=...)``: a store of the test's kind on the test's database."""
    if store_kind == "sync":
        yield functools.partial(WorkflowStore, db)
        return
    loop = LoopThread()
    async_db = loop.run(_open(db_url))
    try:
        yield lambda **options: cast(
            WorkflowStore, BlockingStore(AsyncWorkflowStore(async_db, **options), loop, db)
        )
    finally:
        loop.run(async_db.close())
        loop.close()


async def _open(url: str) -> AsyncDatabase:
    return await connect_async(url)


@pytest.fixture
def store(make_store: MakeStore) -> WorkflowStore:
    """The store every behaviour test runs against: both kinds, both databases."""
    return make_store()


@pytest.fixture
def pg_urls(pg_server: PostgresServer | None) -> Iterator[tuple[str, str]]:
    """A migrated PostgreSQL database: the store's URL (through PgBouncer when tested so) and a direct one."""
    server = require_pg(pg_server)
    name = server.create_database(template=server.template)
    yield server.client_url_for(name), server.url_for(name)
    server.drop_database(name)

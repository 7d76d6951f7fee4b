"""Failover: a multi-host URL with target_session_attrs=read-write finds the promoted standby.

A throw-away primary and a synchronous streaming standby of its own (``initdb``, ``pg_basebackup
-R``, ports of their own on 127.0.0.1; never the shared server). The primary is stopped at once
(``-m immediate``), the standby promoted: the pool finds the new primary within ``timeout``, every
write acknowledged before the loss is there, and the migrator works on it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from factories import make_graph, present
from pg_cluster import ThrowawayCluster

from workflow_db import DatabaseUnavailableError, WorkflowStore, connect
from workflow_db.migrate import upgrade


@pytest.fixture
def primary_and_standby(
    pg_server: object, tmp_path: Path
) -> Iterator[tuple[ThrowawayCluster, ThrowawayCluster]]:
    """A primary whose commits wait for its standby (``synchronous_standby_names = '*'``)."""
    primary = ThrowawayCluster.start(tmp_path / "primary")
    if primary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb/pg_ctl not found: CI must run the failover tests")
        pytest.skip("initdb/pg_ctl not found")
    standby = None
    try:
        standby = ThrowawayCluster.standby_of(primary)
        with psycopg.connect(primary.url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            admin.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 60
            while (
                admin.execute("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()
                is None
            ):
                assert time.monotonic() < deadline, "the standby never became synchronous"
                time.sleep(0.05)  # polling a state, not waiting out a race
        yield primary, standby
    finally:
        primary.remove()
        if standby is not None:
            standby.remove()


def test_a_promoted_standby_takes_over_with_every_acknowledged_write(
    primary_and_standby: tuple[ThrowawayCluster, ThrowawayCluster],
) -> None:
    primary, standby = primary_and_standby
    url = (
        f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
        "?target_session_attrs=read-write"
    )
    # the standby also serves reads until it is promoted; then it is no replica and reads skip it
    with connect(url, timeout=20, replica_urls=[standby.url]) as db:
        assert upgrade(db) != []
        store = WorkflowStore(db)
        graph = make_graph(store)
        acknowledged = [store.create_run(graph.id).id for _ in range(20)]

        primary.stop()  # -m immediate: its connections break
        standby.promote()

        # a call that meets a broken connection fails cleanly, or finds the new primary at once
        with contextlib.suppress(DatabaseUnavailableError):
            store.get_run(acknowledged[0])
        written = store.create_run(graph.id)  # on the promoted standby
        assert [present(store.get_run(run_id)).id for run_id in acknowledged] == acknowledged
        assert present(store.get_run(written.id)).workflow_id == graph.id
        assert upgrade(db) == []  # the migrator and its lock work on the new primary
        with db.reading() as session:
            assert session.one("SELECT pg_is_in_recovery(), inet_server_port()") == (False, standby.port)

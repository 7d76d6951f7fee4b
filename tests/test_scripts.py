"""The operator scripts run from a checkout, on both databases."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import PostgresServer, require_pg
from pg_cluster import free_port

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_demo_drives_a_run_to_completion(blank_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "demo.py"), "--url", blank_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert "status completed" in lines[1]
    assert [line.split()[:3] for line in lines[3:]] == [
        ["extract", "completed", "1.00"],
        ["transform", "completed", "1.00"],
        ["load", "completed", "1.00"],
    ]


def test_demo_without_a_url_leaves_no_database_behind(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "WORKFLOW_DB_URL"}
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "demo.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert "status completed" in result.stdout.splitlines()[1]
    assert list(tmp_path.iterdir()) == []  # no ./workflow.db (nor anything else) in the user's directory


def test_bench_times_pages_on_both_sizes_in_the_same_rounds(blank_url: str, tmp_path: Path) -> None:
    arguments = [
        "--url",
        blank_url,
        "--runs",
        "200",
        "--scale",
        "1000",
        "--repeat",
        "1",
        "--rounds",
        "1",
        "--async-seconds",
        "0.1",
    ]
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench.py"), *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in result.stdout.splitlines()
        if line.startswith("| ")
    }
    assert "list_runs() all 200" in rows and "get_run" in rows and "100 threads x 10 create_run" in rows
    for name in ("project", "status", "workflow"):
        sizes = [
            int(size.replace(",", ""))
            for size in re.findall(rf"by {name} \(([\d,]+) runs\) \|", result.stdout)
        ]
        assert len(sizes) == 2 and sizes[1] - sizes[0] == 1000  # the reference copy, then with the scale set
        assert f"page by {name}: {sizes[1]:,} runs / {sizes[0]:,} runs" in rows
    assert _databases_named_like(blank_url, "reference") == []  # the copy is gone
    async_rows = result.stdout.partition("| workload, 200 tasks |")[2].splitlines()[2:]
    assert [row.split(" | ")[0] for row in async_rows] == [
        "| get_run",
        "| list_node_states (100 nodes)",
        "| set_node_state",
    ]
    contenders = 3 if blank_url.startswith("postgresql") else 2
    assert all(row.count("calls/s") == 0 and row.count(" / ") == contenders for row in async_rows)


def _databases_named_like(url: str, part: str) -> list[str]:
    if url.startswith("sqlite:"):
        return [path.name for path in Path(url.partition(":///")[2]).parent.iterdir() if part in path.name]
    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT datname FROM pg_database WHERE strpos(datname, %s) > 0", (part,))
        return [str(name) for (name,) in rows]


@pytest.mark.pgbouncer
def test_pgbouncer_scripts_stop_only_what_they_started(pg_server: PostgresServer | None) -> None:
    require_pg(pg_server)
    port = str(free_port())
    ours, elsewhere = (f"/tmp/workflow_db-pgbouncer-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    env = {**os.environ, "PGBOUNCER_PORT": port, "PGBOUNCER_DIR": ours}

    def answers() -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", port]).returncode == 0

    try:
        subprocess.run(["bash", str(SCRIPTS / "start-pgbouncer.sh")], env=env, check=True)
        assert answers()
        # A stop pointed at a directory this script never started from leaves it running.
        subprocess.run(["bash", str(SCRIPTS / "stop-pgbouncer.sh")], env={**env, "PGBOUNCER_DIR": elsewhere},
                       check=True)  # fmt: skip
        assert answers()
        subprocess.run(["bash", str(SCRIPTS / "stop-pgbouncer.sh")], env=env, check=True)
        assert not answers()
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop-pgbouncer.sh")], env=env)
        shutil.rmtree(ours, ignore_errors=True)


@pytest.fixture
def scratch_pg_url(pg_server: PostgresServer | None) -> Iterator[str]:
    """The URL of a database a script may drop and create (dropped afterwards)."""
    server = require_pg(pg_server)
    name = f"wfdb_script_{uuid.uuid4().hex[:8]}"
    yield server.url_for(name)
    server.drop_database(name)


def test_bench_writers_compares_the_store_with_plain_updates(scratch_pg_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_writers.py"), "--url", scratch_pg_url, "--writers", "4",
         "--seconds", "0.3", "--rounds", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"store", "store, no wake-up signal", "plain UPDATE"} <= rows.keys()
    assert re.search(r"store / plain UPDATE: \d+\.\d\dx", result.stdout)
    assert re.search(r"p99 [\d.]+ ms over [1-9]\d* probes", result.stdout)  # the watcher saw the probes


def test_bench_langgraph_times_every_call_of_both_pairs_of_savers(blank_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_langgraph.py"), "--url", blank_url,
         "--threads", "2", "--steps", "3"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    rows = [line.split("|") for line in result.stdout.splitlines() if re.match(r"\| [a-z_]+ \| \d", line)]
    assert [row[1].strip() for row in rows] == ["put", "put_writes", "get_tuple", "list"] * 2
    assert all(re.fullmatch(r" \d+\.\d\dx ", row[4]) for row in rows)
    assert "langgraph-checkpoint-" in result.stdout


def test_bench_service_runs_every_scenario(scratch_pg_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_service.py"), "--url", scratch_pg_url, "--runs", "6",
         "--readers", "1", "--lease", "1.5"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    rows = [
        line.split("|") for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    names = [row[1].strip() for row in rows[1:]]
    assert names == [
        "in memory (dicts), 1 replica",
        "PostgreSQL, 1 replica",
        "PostgreSQL, 3 replicas, one SIGKILLed",
    ]
    assert all(float(row[2]) > 0 for row in rows[1:])  # runs/s: every run completed
    assert re.fullmatch(r" \d+\.\d\d s ", rows[3][7])  # the killed replica's runs were taken over
    assert "PostgreSQL 1 replica / in memory:" in result.stdout


def test_every_file_the_readme_names_is_in_the_repository() -> None:
    """A user's clone is all they have: the README may point at nothing outside it."""
    root = SCRIPTS.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "../" not in readme
    files = {path.name for path in root.rglob("*") if ".tox" not in path.parts and ".venv" not in path.parts}
    named = set(re.findall(r"[\w./-]+\.(?:md|py|sh|sql|ini|cfg|toml)\b", readme))
    patterns = {"sql/sqlite/NNNN_name.sql", "sql/postgresql/NNNN_name.sql", "workflow_db.sql"}  # not files
    missing = {
        name for name in named - patterns if not (root / name).exists() and Path(name).name not in files
    }
    assert missing == set()


def test_bench_replicas_measures_reads_waits_and_failovers(pg_server: PostgresServer | None) -> None:
    require_pg(pg_server)  # runs in the postgresql env; it starts clusters of its own
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_replicas.py"), "--seconds", "0.3", "--processes", "1",
         "--threads", "2", "--runs", "30", "--writes", "20"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    rows = re.findall(r"^\| (\d) \| ([\d,]+) \|$", result.stdout, re.MULTILINE)
    assert [replicas for replicas, _ in rows] == ["0", "1"] and all(
        int(n.replace(",", "")) > 0 for _, n in rows
    )
    assert len(re.findall(r"^\| [01] \| [04] \| [\d.]+ / [\d.]+ ms \|$", result.stdout, re.MULTILINE)) == 4
    assert re.search(r"replay lag, .*: [\d.]+ / [\d.]+ ms", result.stdout)
    failovers = re.findall(
        r"^\| (a?synchronous) \| \d+ ms \| \d+ ms \| \d+ \| (\d+) \|$", result.stdout, re.MULTILINE
    )
    assert failovers[0] == ("synchronous", "0")  # a synchronous standby loses no acknowledged write
    assert [kind for kind, _ in failovers] == ["synchronous", "asynchronous"]

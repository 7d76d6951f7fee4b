"""SPEC.md section 1 (schema) and the migration runner, on both databases."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import PostgresServer, require_pg
from factories import SHIPPED_VERSIONS, graph_structure, present
from schema_info import describe

from workflow_db import Database, IntegrityError, MigrationError, ValidationError, WorkflowStore, connect
from workflow_db.importer import main as importer_main
from workflow_db.migrate import checksum, main, migrations_directory, plan, status, upgrade

TABLE = {
    "sqlite": "CREATE TABLE {name} (id INTEGER PRIMARY KEY);",
    "postgresql": "CREATE TABLE {name} (id integer PRIMARY KEY);",
}
SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) "
    "SELECT count(*) FROM c;",
    "postgresql": "SELECT pg_sleep(0.3);",
}


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8", newline="")
    return folder


def applied_versions(db: Database) -> list[int]:
    with db.reading() as session:
        return [row[0] for row in session.all("SELECT version FROM workflow_db_migrations ORDER BY version")]


def table_names(db: Database) -> set[str]:
    return set(describe(db))


# -- the shipped schema --------------------------------------------------------------


def test_schema_has_spec_tables_columns_keys_and_indexes(blank_url: str) -> None:
    with connect(blank_url) as db:
        assert upgrade(db) == SHIPPED_VERSIONS
        schema = describe(db)
    graphs, runs, nodes = (schema[t] for t in ("workflow_graphs", "workflow_runs", "workflow_node_states"))
    assert {
        "id",
        "project_id",
        "name",
        "description",
        "graph_json",
        "created_at",
        "updated_at",
    } <= set(graphs["columns"])
    assert {
        "id",
        "project_id",
        "workflow_id",
        "status",
        "input_json",
        "output_json",
        "started_at",
        "finished_at",
        "last_message",
    } <= set(runs["columns"])
    assert {
        "run_id",
        "node_id",
        "status",
        "progress",
        "messages_json",
        "started_at",
        "completed_at",
        "error",
    } <= set(nodes["columns"])
    assert nodes["primary_key"] == ["run_id", "node_id"]
    assert (("project_id",), "projects", ("id",), "RESTRICT") in graphs["foreign_keys"]
    assert (("project_id",), "projects", ("id",), "RESTRICT") in runs["foreign_keys"]
    assert (("workflow_id",), "workflow_graphs", ("id",), "RESTRICT") in runs["foreign_keys"]
    assert (("run_id",), "workflow_runs", ("id",), "CASCADE") in nodes["foreign_keys"]
    leading = {cols[0][0] for cols in runs["indexes"].values()}
    assert {"project_id", "workflow_id", "status"} <= leading
    for column in ("project_id", "workflow_id", "status"):
        index = next(
            cols for cols in runs["indexes"].values() if [c for c, _ in cols] == [column, "started_at", "id"]
        )
        assert index[1:] == [("started_at", True), ("id", True)]
    assert any(cols[0][0] == "project_id" for cols in graphs["indexes"].values())
    assert any(cols[0][0] == "run_id" for cols in nodes["indexes"].values())
    assert any(cols[0][0] == "status" for cols in nodes["indexes"].values())


def test_both_dialects_have_the_same_schema(tmp_path: Path, pg_server: PostgresServer | None) -> None:
    server = require_pg(pg_server)
    with connect(f"sqlite:///{tmp_path / 's.db'}") as sqlite_db:
        upgrade(sqlite_db)
        sqlite_schema = describe(sqlite_db)
    with connect(server.url_for(server.template)) as pg_db:
        pg_schema = describe(pg_db)
    # Schema 6's one difference by design: SQLite numbers changes as it writes (a counter
    # table; seq never NULL), PostgreSQL once they committed (a sequence; seq NULL until then).
    del sqlite_schema["workflow_change_counter"]
    sqlite_schema["workflow_changes"]["not_null"].remove("seq")
    # Schema 11's: PostgreSQL's node writes file their own change and heartbeat and say so in
    # `noted` (SQLite's triggers do it all).
    for key in ("columns", "not_null"):
        pg_schema["workflow_node_states"][key].remove("noted")
    assert sqlite_schema == pg_schema


def test_upgrade_twice_is_a_no_op(blank_url: str) -> None:
    with connect(blank_url) as db:
        assert upgrade(db) == SHIPPED_VERSIONS
        before = describe(db)
        assert upgrade(db) == []
        assert describe(db) == before
        assert applied_versions(db) == SHIPPED_VERSIONS
        rows = status(db)
    assert [(r.version, r.name, r.state, r.checksum_ok) for r in rows] == [
        (1, "initial", "applied", True),
        (2, "service_data", "applied", True),
        (3, "run_lifecycle", "applied", True),
        (4, "run_leases", "applied", True),
        (5, "node_messages", "applied", True),
        (6, "change_feed", "applied", True),
        (7, "change_feed_run_lookup", "applied", True),
        (8, "quiet_feed_and_fencing", "applied", True),
        (9, "listed_messages_as_rows", "applied", True),
        (10, "langgraph_checkpoints", "applied", True),
        (11, "node_writes_note_themselves", "applied", True),
    ]
    assert present(rows[0].applied_at).tzinfo is UTC


# -- the runner, with migration sets of the tests' own --------------------------------


def test_failing_file_leaves_nothing_behind(blank_url: str, dialect: str, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_first.sql": TABLE[dialect].format(name="first_table"),
            "0002_broken.sql": TABLE[dialect].format(name="half_table")
            + "\nINSERT INTO no_such_table VALUES (1);\n",
        },
    )
    with connect(blank_url) as db:
        with pytest.raises(MigrationError, match=r"0002_broken\.sql failed .*nothing of it was applied"):
            upgrade(db, directory=folder)
        assert applied_versions(db) == [1]
        assert "first_table" in table_names(db) and "half_table" not in table_names(db)
        (folder / "0002_broken.sql").write_text(TABLE[dialect].format(name="half_table"))
        assert upgrade(db, directory=folder) == [2]


def test_edited_applied_file_is_refused_before_anything_runs(
    blank_url: str, dialect: str, tmp_path: Path
) -> None:
    folder = write_migrations(tmp_path / "m", {"0001_first.sql": TABLE[dialect].format(name="t1")})
    with connect(blank_url) as db:
        upgrade(db, directory=folder)
        old = checksum((folder / "0001_first.sql").read_text())
        (folder / "0001_first.sql").write_text(TABLE[dialect].format(name="t1_edited"))
        new = checksum((folder / "0001_first.sql").read_text())
        write_migrations(folder, {"0002_second.sql": TABLE[dialect].format(name="t2")})
        with pytest.raises(MigrationError, match=f"0001_first.sql was changed.*{old}.*{new}"):
            upgrade(db, directory=folder)
        with pytest.raises(MigrationError, match="changed"):
            plan(db, directory=folder)
        assert "t2" not in table_names(db)
        assert [r.state for r in status(db, directory=folder)] == ["modified", "pending"]


def test_checksum_ignores_bom_and_line_endings() -> None:
    assert checksum("\ufeffSELECT 1;\r\nSELECT 2;\r\n") == checksum("SELECT 1;\nSELECT 2;\n")
    assert checksum("SELECT 1;") != checksum("SELECT 2;")


def test_history_that_does_not_fit_the_files_is_refused(blank_url: str, dialect: str, tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_a.sql": TABLE[dialect].format(name="a"),
            "0003_c.sql": TABLE[dialect].format(name="c"),
        },
    )
    with connect(blank_url) as db:
        upgrade(db, directory=folder)
        write_migrations(folder, {"0002_b.sql": TABLE[dialect].format(name="b")})
        with pytest.raises(MigrationError, match=r"0002_b\.sql is pending but the later version 3"):
            upgrade(db, directory=folder)
        (folder / "0002_b.sql").unlink()
        (folder / "0003_c.sql").unlink()
        with pytest.raises(MigrationError, match="version 3 \\(c\\) is applied but its file is missing"):
            upgrade(db, directory=folder)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"0001_a.sql": "SELECT 1;", "1_b.sql": "SELECT 1;"}, "version 1 is also"),
        ({"first.sql": "SELECT 1;"}, "NNNN_name.sql"),
        ({"0001_a.sql": "BEGIN;\nSELECT 1;\nCOMMIT;"}, "own BEGIN"),
        ({"0001_a.sql": "SELECT 1;\n-- done\nCOMMIT;"}, "own COMMIT"),
    ],
)
def test_bad_migration_files_are_refused(
    blank_url: str, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    folder = write_migrations(tmp_path / "m", files)
    with connect(blank_url) as db, pytest.raises(MigrationError, match=message):
        upgrade(db, directory=folder)


def test_non_transactional_file_runs_statement_by_statement(
    blank_url: str, dialect: str, tmp_path: Path
) -> None:
    index = {
        "sqlite": "CREATE INDEX IF NOT EXISTS t_id ON t (id);",
        "postgresql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_id ON t (id);",
    }[dialect]
    folder = write_migrations(
        tmp_path / "m",
        {
            "0001_table.sql": TABLE[dialect].format(name="t"),
            "0002_index.sql": f"-- transactional: false\n{index}\n",
        },
    )
    with connect(blank_url) as db:
        assert upgrade(db, directory=folder) == [1, 2]
        assert "t_id" in describe(db)["t"]["indexes"]


def test_plan_writes_nothing(blank_url: str, dialect: str, tmp_path: Path) -> None:
    with connect(blank_url) as db:
        assert [m.version for m in plan(db)] == SHIPPED_VERSIONS
        assert table_names(db) == set()  # not even the version table
        assert [r.state for r in status(db)] == ["pending"] * len(SHIPPED_VERSIONS)
        upgrade(db)
        assert plan(db) == []


CONCURRENT_UPGRADE = textwrap.dedent(
    """
    import json, sys
    from workflow_db import connect
    from workflow_db.migrate import upgrade
    url, folder = sys.argv[1], sys.argv[2]
    with connect(url) as db:
        print(json.dumps(upgrade(db, directory=None if folder == "-" else folder)))
    """
)


def _run_concurrently(url: str, folder: str, processes: int = 4) -> list[list[int]]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_UPGRADE, url, folder],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_four_processes_apply_each_file_exactly_once(blank_url: str, dialect: str, tmp_path: Path) -> None:
    files = {
        f"{n:04d}_step{n}.sql": TABLE[dialect].format(name=f"t{n}") + "\n" + SLOW[dialect]
        for n in range(1, 6)
    }
    folder = write_migrations(tmp_path / "m", files)
    results = _run_concurrently(blank_url, str(folder))
    applied = sorted(v for result in results for v in result)
    assert applied == [1, 2, 3, 4, 5]  # each version applied by exactly one process
    with connect(blank_url) as db:
        assert applied_versions(db) == [1, 2, 3, 4, 5]


def test_four_processes_apply_the_shipped_schema_once(blank_url: str) -> None:
    results = _run_concurrently(blank_url, "-")
    assert sorted(v for result in results for v in result) == SHIPPED_VERSIONS
    with connect(blank_url) as db:
        assert applied_versions(db) == SHIPPED_VERSIONS


# -- command line ------------------------------------------------------------------------


def test_cli_up_status_plan(blank_url: str, dialect: str, capsys: pytest.CaptureFixture[str]) -> None:
    if dialect == "sqlite":  # a database not there yet: every migration pending, and no file made
        assert main(["--url", blank_url, "plan"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"-- database {blank_url} does not exist yet: `up` creates it")
        assert "CREATE TABLE workflow_runs" in out
        assert main(["--url", blank_url, "status"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == f"database {blank_url} does not exist yet"
        assert [line.split()[-1] for line in out.splitlines()[2:]] == ["pending"] * len(SHIPPED_VERSIONS)
        assert not Path(blank_url.removeprefix("sqlite:///")).exists()
    else:
        assert main(["--url", blank_url, "plan"]) == 0
        assert "CREATE TABLE workflow_runs" in capsys.readouterr().out
        assert main(["--url", blank_url, "status"]) == 0
        assert "pending" in capsys.readouterr().out
    assert main(["--url", blank_url]) == 0
    assert capsys.readouterr().out.startswith(
        f"applied {len(SHIPPED_VERSIONS)} migration(s): {SHIPPED_VERSIONS} to "
    )
    assert main(["--url", blank_url, "up"]) == 0
    captured = capsys.readouterr()
    assert captured.out.endswith(" is up to date\n") and captured.out.count("\n") == 1  # one line, once
    assert "up to date" not in captured.err
    assert main(["--url", blank_url, "status"]) == 0
    out = capsys.readouterr().out
    assert "applied" in out and out.startswith(f"database {dialect}")  # it names the database
    assert main(["--url", blank_url, "plan"]) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_cli_status_names_versions_newer_than_this_package(
    blank_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(blank_url) as db:
        upgrade(db)
        with db.writing() as session:
            session.run(
                "INSERT INTO workflow_db_migrations (version, name, checksum, applied_at, duration_ms) "
                "VALUES (99, 'from_the_future', 'sha256:0', :at, 1)",
                {"at": db.encode_time(datetime.now(UTC))},
            )
    assert main(["--url", blank_url, "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].split()[:2] == ["99", "from_the_future"] and lines[-2].endswith(
        "newer than this package"
    )
    assert lines[-1].startswith("1 applied migration(s) newer than this package")
    assert "modified" not in "\n".join(lines)


def test_cli_modified_file(blank_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", blank_url]) == 0
    with connect(blank_url) as db, db.writing() as session:
        session.run("UPDATE workflow_db_migrations SET checksum = 'sha256:0000'")
    capsys.readouterr()
    assert main(["--url", blank_url, "status"]) == 0
    captured = capsys.readouterr().out
    assert "modified" in captured and "changed since they were applied" in captured
    assert main(["--url", blank_url, "up"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 0001_initial.sql was changed") and "Traceback" not in err
    assert main(["--url", blank_url, "plan"]) == 1


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--url", "mysql://u:hunter2@h/db"], 2, "scheme 'mysql' is not supported"),
        (["--url", "postgresql://u:hunter2@h:notaport/db"], 2, "malformed postgresql URL"),
        (["--url", "sqlite://relative.db"], 2, "malformed sqlite URL"),
        (["--url", "no-scheme"], 2, "no scheme"),
        (["sideways"], 2, "invalid choice"),
    ],
)
def test_cli_usage_errors(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "hunter2" not in err


def test_cli_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from pg_cluster import free_port

    url = f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db"
    assert main(["--url", url, "--timeout", "1", "status"]) == 1
    err = capsys.readouterr().err
    assert "did not accept a connection within 1 s" in err and "u:***@127.0.0.1" in err
    assert "hunter2" not in err and "Traceback" not in err


def test_python_dash_m_exit_codes(blank_url: str, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "workflow_db.migrate", "--url", blank_url, "up"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "workflow_db.migrate", "--url", "ftp://x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "ftp" in bad.stderr


def test_installed_wheel_migrates_from_another_directory(tmp_path: Path) -> None:
    """The wheel carries sql/: install it (not editable) and migrate from an unrelated folder."""
    repo = Path(__file__).resolve().parents[1]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(repo)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("workflow_db-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        "PYTHONPATH": str(target),
        "PATH": "/usr/bin:/bin",
        "WORKFLOW_DB_URL": "sqlite:///deployed.db",
    }
    where = subprocess.run(
        [sys.executable, "-c", "import workflow_db; print(workflow_db.__file__)"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        check=True,
    )
    assert where.stdout.startswith(str(target))
    result = subprocess.run(
        [sys.executable, "-m", "workflow_db.migrate"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"applied {len(SHIPPED_VERSIONS)} migration(s)" in result.stdout
    assert (elsewhere / "deployed.db").exists()


# -- schema 2 on a database that already holds data ---------------------------------------

_TRIGGERS = {
    "sqlite": "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    "postgresql": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
    "WHERE NOT tgisinternal ORDER BY tgname",
}
_TABLES = ("projects", "workflow_graphs", "workflow_graph_versions", "workflow_graph_nodes",
           "workflow_runs", "workflow_node_states")  # fmt: skip


def _rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    with db.reading() as session:
        return {
            table: sorted(map(tuple, session.all(f"SELECT * FROM {table}")), key=repr) for table in _TABLES
        }


def test_schema_2_keeps_every_row_index_trigger_and_foreign_key(
    blank_url: str, db_url: str, dialect: str, tmp_path: Path
) -> None:
    with connect(blank_url) as db:
        first = write_migrations(
            tmp_path / "v1",
            {"0001_initial.sql": migrations_directory(db).joinpath("0001_initial.sql").read_text()},
        )
        assert upgrade(db, directory=first) == [1]
        # Schema 1's data, written in SQL (the store itself needs schema 2): a graph at version 2,
        # 20 runs (their node states made by schema 1's trigger), some node states advanced.
        with db.writing() as session:
            now = db.encode_time(datetime.now(UTC))
            session.run("INSERT INTO projects (id, name, created_at) VALUES ('p', 'p', :now)", {"now": now})
            session.run(
                "INSERT INTO workflow_graphs (id, project_id, name, graph_json, version, created_at, "
                f"updated_at) VALUES ('g', 'p', 'g', '{json.dumps(graph_structure('a', 'b', 'c'))}', 1, "
                ":now, :now)",
                {"now": now},
            )
            session.run(
                "UPDATE workflow_graphs SET version = 2, "
                f"graph_json = '{json.dumps(graph_structure('a', 'b', 'c', 'd'))}' WHERE id = 'g'"
            )
            for n in range(20):
                session.run(
                    "INSERT INTO workflow_runs (id, project_id, workflow_id, workflow_version, status, "
                    "input_json, started_at, finished_at, updated_at) VALUES (:id, 'p', 'g', 2, :status, "
                    f"'{{\"n\": {n}}}', :now, NULL, :now)",
                    {"id": f"run-{n:02d}", "status": "failed" if n == 0 else "running", "now": now},
                )
            session.run(
                "UPDATE workflow_node_states SET status = 'completed', progress = 1.0, "
                "messages_json = '[\"done\", \"ok\"]' WHERE node_id = 'a'"
            )
        before = _rows(db)

        assert upgrade(db) == SHIPPED_VERSIONS[1:]

        after = _rows(db)

        def migrated(row: tuple[object, ...]) -> tuple[object, ...]:
            """Plus updated_at (NULL), and schema 5's appended, appended_message (NULL), messages_bytes.

            On SQLite, schema 9 files a stored list as rows: '[]' stays in the row, appended counts them.
            On PostgreSQL, schema 11's noted (false: nothing the store wrote).
            """
            listed = next(str(v) for v in row if str(v).startswith("["))
            if dialect == "sqlite":
                kept = tuple("[]" if value == listed else value for value in row)
                return (*kept, None, len(json.loads(listed)), None, len(listed))
            return (*row, None, 0, None, len(listed), False)

        assert after.pop("workflow_node_states") == [
            migrated(row) for row in before.pop("workflow_node_states")
        ]
        assert after.pop("workflow_runs") == [
            (*row, None, None, None, None, 0, None)  # plus schema 3's lifecycle columns, NULL,
            for row in before.pop("workflow_runs")  # and schema 8's lease_epoch 0 and lease_token NULL
        ]
        assert after == before
        with connect(db_url) as fresh:  # the same schema as a database migrated from nothing
            assert describe(db) == describe(fresh)
            with db.reading() as mine, fresh.reading() as theirs:
                assert mine.all(_TRIGGERS[dialect]) == theirs.all(_TRIGGERS[dialect])
        if dialect == "sqlite":
            with db.reading() as session:
                assert session.all("PRAGMA foreign_key_check") == []
                assert session.one("PRAGMA foreign_keys") == (1,)  # turned on again after the file
        # And it behaves: new statuses, node states made by the trigger, cascades, foreign keys.
        store = WorkflowStore(db)
        # Schema 6: what was stored is the start of the change feed, each run and node state once.
        feed = store.list_changes()
        assert [c.seq for c in feed] == sorted({c.seq for c in feed})
        assert [(c.kind, c.run_id) for c in feed[:20]] == [("run", f"run-{n:02d}") for n in range(20)]
        assert sorted(
            (c.run_id, c.node_id, c.node_state.status.value) for c in feed[20:] if c.node_state
        ) == [
            (f"run-{n:02d}", node, "completed" if node == "a" else "pending")
            for n in range(20)
            for node in "abcd"
        ]
        run = store.create_run("g", status="paused")
        assert [s.node_id for s in store.list_node_states(run.id)] == ["a", "b", "c", "d"]
        assert store.set_node_state(run.id, "a", status="cancelled").completed_at is not None
        assert store.list_node_states("run-01")[0].messages == ["done", "ok"]
        # Schema 5: messages written before it stay, and appends go after them (within the size cap).
        store.append_node_message("run-01", "a", "appended")
        assert present(store.get_node_state("run-01", "a")).messages == ["done", "ok", "appended"]
        small = WorkflowStore(db, max_json_bytes=len('["done", "ok", "appended"]') + 4)
        with pytest.raises(ValidationError, match="max_json_bytes"):
            small.append_node_message("run-01", "a", "does not fit")
        with pytest.raises(IntegrityError):
            store.set_node_state("no_such_run", "a", progress=0.1)
        assert store.delete_graph("g", cascade=True)
        with db.reading() as session:
            assert session.one("SELECT count(*) FROM workflow_node_states") == (0,)


def test_a_store_on_a_database_not_migrated_yet_names_the_command_to_run(
    blank_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(blank_url) as db:
        with pytest.raises(MigrationError, match="has no workflow_db schema") as never:
            WorkflowStore(db)
        assert f"run `python -m workflow_db.migrate --url {db.display_url} up` first" in str(never.value)
        first = write_migrations(
            tmp_path / "v1",
            {"0001_initial.sql": migrations_directory(db).joinpath("0001_initial.sql").read_text()},
        )
        upgrade(db, directory=first)
        with pytest.raises(
            MigrationError,
            match=f"is at schema version 1; this workflow_db needs version {SHIPPED_VERSIONS[-1]}",
        ):
            WorkflowStore(db)
        snapshot = tmp_path / "snapshot.json"
        snapshot.write_text('{"graphs": {"g": {"name": "g", "nodes": [{"id": "a"}]}}}')
        assert importer_main(["--url", blank_url, str(snapshot)]) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "python -m workflow_db.migrate" in err
        upgrade(db)
        assert WorkflowStore(db).list_graphs() == []  # nothing was written before it refused
        assert importer_main(["--url", blank_url, str(snapshot)]) == 0

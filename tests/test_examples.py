"""Every program under examples/ runs as written, on both databases, and prints what the docs say.

The README's code blocks are these files word for word; the docs include them
(``--8<--``); tests/test_docs.py holds every other block to being marked as a
fragment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from factories import make_graph
from test_service import Service, read_events

from workflow_db import WorkflowStore, connect

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, db_url: str | None, cwd: Path | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if db_url is not None:
        env["WORKFLOW_DB_URL"] = db_url
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_readme_shows_the_quickstart_and_the_app_as_they_are() -> None:
    assert readme_blocks("python") == [
        (EXAMPLES / "quickstart.py").read_text(encoding="utf-8"),
        (EXAMPLES / "fastapi_app.py").read_text(encoding="utf-8"),
    ]


def test_the_quickstart_prints_what_the_readme_says(tmp_path: Path) -> None:
    env_without_url = {key: value for key, value in os.environ.items() if key != "WORKFLOW_DB_URL"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], cwd=tmp_path, env=env_without_url,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout == readme_blocks("text")[0]
    assert (tmp_path / "workflow.db").exists()  # the embedded default, next to the caller


def test_the_api_tour_runs(tmp_path: Path) -> None:
    run_example("api_tour.py", None, cwd=tmp_path)


def test_the_asyncio_example_writes_from_tasks_and_watches(db_url: str) -> None:
    out = run_example("asyncio_tasks.py", db_url)
    assert out.splitlines() == [
        "watched: ['n0', 'n1', 'n2', 'n3']",
        "progress: 1.0 messages: [['halfway'], ['halfway'], ['halfway'], ['halfway']]",
    ]


def test_the_replicas_example_fences_the_stalled_replica(db_url: str) -> None:
    assert run_example("replicas.py", db_url).splitlines() == [
        "replica-b holds the run with lease 2 after 1",
        "replica-a: run '<run>': lease 1 is no longer held",
        "completed owner: None progress: 1.0",
    ]


def test_the_langgraph_example_resumes_a_killed_graph_running_each_node_once(db_url: str) -> None:
    """Replica 1 is SIGKILLed inside "transform": "fetch", checkpointed before, never runs again; the
    rest run once, across the interrupt that paused the run."""
    assert run_example("langgraph_resume.py", db_url).splitlines() == [
        "replica-1 killed in transform",
        "replica-2 resumed it; run paused, waiting for approval: publish 'QUARTERLY NUMBERS'?",
        "run: completed",
        "fetch: ['done by replica-1']",
        "transform: ['done by replica-2']",
        "approve: ['done by replica-3']",
        "publish: ['done by replica-3']",
    ]


def test_the_import_example_imports_once(db_url: str) -> None:
    assert run_example("import_legacy.py", db_url).splitlines() == [
        "first: wrote 1 graphs, 1 runs, 1 node states; "
        "skipped 0 graphs, 0 runs, 1 node states already stored",
        "again: wrote 0 graphs, 0 runs, 0 node states; "
        "skipped 1 graphs, 1 runs, 2 node states already stored",
        "[('start', 'completed'), ('finalize', 'pending')]",
    ]


def test_the_fastapi_app_under_uvicorn(db_url: str, tmp_path: Path) -> None:
    with connect(db_url) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a", "b")
        other = make_graph(store, "q", "a")
    log = tmp_path / "server.log"
    with log.open("w") as errors:
        server = Service(db_url, app="examples.fastapi_app:app", stderr=errors)
        try:
            client = server.client
            created = client.post("/projects/p/runs", params={"workflow_id": graph.id})
            assert created.status_code == 201 and created.json()["status"] == "pending"
            run_id = created.json()["id"]
            for project, workflow in (("p", other.id), ("p", "nope"), ("q", graph.id)):
                refused = client.post(f"/projects/{project}/runs", params={"workflow_id": workflow})
                assert (refused.status_code, refused.json()) == (404, {"detail": "no such workflow"})
            assert client.get(f"/projects/p/runs/{run_id}").json()["id"] == run_id
            assert client.get(f"/projects/q/runs/{run_id}").status_code == 404
            assert client.get("/projects/p/runs/nope").status_code == 404
            events = read_events(server, "p", 3, None)  # the run and its two nodes, as they are now
            assert {event["event"] for event in events} == {"run", "node_state"}
            resumed = read_events(server, "p", 1, last_event_id=events[0]["id"])
            assert resumed[0]["id"] > events[0]["id"]
        finally:
            server.stop()
    assert "Traceback" not in log.read_text() and "ERROR" not in log.read_text()  # clients left cleanly

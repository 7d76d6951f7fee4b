"""The example service (examples/service/) under real uvicorn processes on 127.0.0.1, on both databases.

One replica on SQLite and PostgreSQL; three replicas on one PostgreSQL, one
of them SIGKILLed mid-run, for the lease takeover.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
GRAPH = {"name": "three steps", "nodes": [{"id": "fetch"}, {"id": "think"}, {"id": "answer"}]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One uvicorn process serving ``app`` (a replica of examples.service.app by default)."""

    def __init__(
        self,
        db_url: str,
        settings: dict[str, str] | None = None,
        *,
        app: str = "examples.service.app:app",
        stderr: IO[str] | None = None,
    ) -> None:
        self.port = _free_port()
        env = {**os.environ, "WORKFLOW_DB_URL": db_url, "PYTHONPATH": str(ROOT), **(settings or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            env=env,
            cwd=ROOT,
            stderr=stderr,
        )  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        try:
            wait_for(self._answers, what="the service to answer")
        except BaseException:  # never leave a process behind
            self.stop(signal.SIGKILL)
            raise
        health = self.client.get("/healthz")
        self.owner = health.json()["owner"] if health.status_code == 200 else ""

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the service exited with {self.process.returncode}")
        try:
            self.client.get("/healthz")
        except httpx.TransportError:
            return False
        return True  # any answer: the app is up (only the service has /healthz)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=60)


def wait_for(condition: Callable[[], bool], *, what: str, seconds: float = 90) -> None:
    """Poll ``condition`` (every 50 ms) until it holds; fail after ``seconds``."""
    pause = threading.Event()
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        pause.wait(0.05)


@contextmanager
def services(db_url: str, count: int, **settings: str) -> Iterator[list[Service]]:
    started: list[Service] = []
    try:
        for _ in range(count):
            started.append(Service(db_url, settings))
        yield started
    finally:
        for service in started:
            service.stop()


FAST = {"SERVICE_LEASE_SECONDS": "2", "SERVICE_STEP_SECONDS": "0.01", "SERVICE_STEPS": "2"}


def all_finished(client: httpx.Client, project: str, run_ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        runs = [client.get(f"/projects/{project}/runs/{run_id}").json() for run_id in run_ids]
        return all(run["status"] in ("completed", "failed", "cancelled") for run in runs)

    return check


def node_messages(client: httpx.Client, project: str, run_id: str) -> dict[str, list[str]]:
    summary = client.get(f"/projects/{project}/runs/{run_id}/summary").json()
    return {node["node_id"]: node["messages"] for node in summary["nodes"]}


def test_runs_complete_and_other_projects_ids_are_404(db_url: str) -> None:
    with services(db_url, 1, **FAST) as (service,):
        client = service.client
        graph = client.post("/projects/p/graphs", json=GRAPH).json()
        run_ids = [
            client.post("/projects/p/runs", json={"workflow_id": graph["id"], "input": {"n": n}}).json()["id"]
            for n in range(10)
        ]
        wait_for(all_finished(client, "p", run_ids), what="ten runs to complete")
        for run_id in run_ids:
            summary = client.get(f"/projects/p/runs/{run_id}/summary").json()
            assert summary["run"]["status"] == "completed" and summary["run"]["owner"] is None
            assert [(n["node_id"], n["status"], n["progress"]) for n in summary["nodes"]] == [
                ("fetch", "completed", 1.0), ("think", "completed", 1.0), ("answer", "completed", 1.0)
            ]  # fmt: skip
            assert node_messages(client, "p", run_id) == {
                node: [f"{service.owner}: {node} done in 2 steps"] for node in ("fetch", "think", "answer")
            }
        client.post("/projects/q/graphs", json=GRAPH)
        for path in (f"/runs/{run_ids[0]}", f"/runs/{run_ids[0]}/summary", f"/graphs/{graph['id']}"):
            other, unknown = client.get(f"/projects/q{path}"), client.get(f"/projects/q{path}-nope")
            assert other.status_code == unknown.status_code == 404
            assert other.json() == {"detail": "no such run" if "runs" in path else "no such graph"}
        assert client.post(f"/projects/q/runs/{run_ids[0]}/cancel").status_code == 404
        assert client.post("/projects/q/runs", json={"workflow_id": graph["id"]}).status_code == 404


def test_cancel_and_pause_stop_the_executor_and_resume_goes_on(db_url: str) -> None:
    slow = {**FAST, "SERVICE_STEP_SECONDS": "0.3"}
    with services(db_url, 1, **slow) as (service,):
        client = service.client
        graph = client.post("/projects/p/graphs", json=GRAPH).json()
        doomed = client.post("/projects/p/runs", json={"workflow_id": graph["id"]}).json()["id"]
        paused = client.post("/projects/p/runs", json={"workflow_id": graph["id"]}).json()["id"]
        wait_for(lambda: client.get(f"/projects/p/runs/{paused}").json()["status"] == "running", what="start")
        assert client.post(f"/projects/p/runs/{doomed}/cancel").json()["status"] == "cancelled"
        assert client.post(f"/projects/p/runs/{paused}/pause").json()["status"] == "paused"
        wait_for(
            lambda: doomed not in client.get("/healthz").json()["executing"], what="the cancel to stop it"
        )
        wait_for(
            lambda: paused not in client.get("/healthz").json()["executing"], what="the pause to stop it"
        )
        states = client.get(f"/projects/p/runs/{doomed}/summary").json()["nodes"]
        assert {node["status"] for node in states} <= {"cancelled", "completed"}  # nothing left RUNNING
        assert client.post(f"/projects/p/runs/{doomed}/cancel").status_code == 409
        assert client.post(f"/projects/p/runs/{paused}/resume").json()["status"] == "running"
        wait_for(all_finished(client, "p", [paused]), what="the resumed run to complete")
        assert client.get(f"/projects/p/runs/{paused}").json()["status"] == "completed"


def read_events(
    service: Service, project: str, count: int, last_event_id: int | None
) -> list[dict[str, Any]]:
    """The first ``count`` events of the project's stream (then the client leaves)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events: list[dict[str, Any]] = []
    with service.client.stream("GET", f"/projects/{project}/events", headers=headers) as response:
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = line[6:]
            elif line == "" and event:
                events.append(event)
                event = {}
                if len(events) == count:
                    break
    return events


def test_server_sent_events_resume_from_last_event_id_without_a_gap(db_url: str) -> None:
    with services(db_url, 1, **FAST) as (service,):
        client = service.client
        graph = client.post("/projects/p/graphs", json=GRAPH).json()
        client.post("/projects/q/graphs", json=GRAPH)
        first_run = client.post("/projects/p/runs", json={"workflow_id": graph["id"]}).json()["id"]
        wait_for(all_finished(client, "p", [first_run]), what="the first run")
        first = read_events(service, "p", 4, None)  # the run and its three nodes, as they are now
        assert {(e["event"], e["data"].count(first_run) > 0) for e in first} == {
            ("workflow.run.updated", True), ("workflow.node_state.updated", True)
        }  # fmt: skip
        second_run = client.post("/projects/p/runs", json={"workflow_id": graph["id"]}).json()["id"]
        wait_for(all_finished(client, "p", [second_run]), what="the second run")
        resumed = read_events(service, "p", 4, first[-1]["id"])
        assert all(e["id"] > first[-1]["id"] for e in resumed)
        assert [e["id"] for e in resumed] == sorted(e["id"] for e in resumed)
        assert all(second_run in e["data"] for e in resumed)  # the second run's four objects, nothing missed


def test_a_killed_replicas_runs_are_resumed_by_exactly_one_other(pg_urls: tuple[str, str]) -> None:
    db_url, _ = pg_urls
    settings = {"SERVICE_LEASE_SECONDS": "3", "SERVICE_STEP_SECONDS": "0.5", "SERVICE_STEPS": "3"}
    with services(db_url, 3, **settings) as (doomed, *survivors):
        client = doomed.client
        graph = client.post("/projects/p/graphs", json=GRAPH).json()
        run_ids = [
            client.post("/projects/p/runs", json={"workflow_id": graph["id"]}).json()["id"] for _ in range(12)
        ]
        wait_for(
            lambda: all(client.get(f"/projects/p/runs/{r}").json()["status"] == "running" for r in run_ids),
            what="the doomed replica to start every run",
        )
        doomed.stop(signal.SIGKILL)
        reader = survivors[0].client
        wait_for(all_finished(reader, "p", run_ids), what="the survivors to finish the runs")
        for run_id in run_ids:
            summary = reader.get(f"/projects/p/runs/{run_id}/summary").json()
            assert summary["run"]["status"] == "completed"
            assert all(node["status"] == "completed" for node in summary["nodes"])
            owners = {
                m.split(": ")[0] for messages in node_messages(reader, "p", run_id).values() for m in messages
            }
            taken_by = owners - {doomed.owner}
            assert len(taken_by) == 1 and taken_by <= {s.owner for s in survivors}  # exactly one other

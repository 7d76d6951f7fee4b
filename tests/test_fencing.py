"""Fencing tokens: a write on behalf of a lease lands only while that lease holds, on both databases.

Leases use the database's clock, so expiry is real time: short leases, and
waits just past them (never longer than a lease).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from factories import make_graph, orphan, present, start_together, wait_past

from workflow_db import ConflictError, ValidationError, WorkflowStore, connect

FencedWrite = Callable[[WorkflowStore, str, int], object]

FENCED_WRITES: dict[str, FencedWrite] = {
    "set_node_state": lambda s, r, t: s.set_node_state(r, "a", progress=0.5, lease_token=t),
    "append_node_message": lambda s, r, t: s.append_node_message(r, "a", "late", lease_token=t),
    "update_run_status": lambda s, r, t: s.update_run_status(r, "completed", lease_token=t),
    "pause_run": lambda s, r, t: s.pause_run(r, checkpoint={"at": 1}, lease_token=t),
}


@pytest.fixture
def run_id(store: WorkflowStore) -> str:
    return store.create_run(make_graph(store, "p", "a", "b").id, status="running").id


def snapshot(store: WorkflowStore, run_id: str) -> tuple[object, ...]:
    return (store.get_run(run_id), store.list_node_states(run_id))


def test_each_claim_issues_a_greater_token_and_a_renewal_keeps_it(store: WorkflowStore, run_id: str) -> None:
    assert present(store.get_run(run_id)).lease_token is None
    first = present(store.claim_run(run_id, "w1", lease_seconds=0.3)).lease_token
    assert first is not None and first >= 1
    assert present(store.claim_run(run_id, "w1")).lease_token == first  # renewal
    released = present(store.release_run(run_id, "w1"))
    assert released.lease_token is None and released.owner is None
    second = present(store.claim_run(run_id, "w1", lease_seconds=0.3)).lease_token  # a new claim
    assert second is not None and second > first
    wait_past(present(store.get_run(run_id)))
    assert present(store.claim_run(run_id, "w1")).lease_token == second  # expired, nobody took it: renewal
    short = present(store.claim_run(run_id, "w1", lease_seconds=0.2))
    wait_past(short)
    third = present(store.claim_run(run_id, "w2")).lease_token
    assert third is not None and third > second
    orphan(store, run_id)
    wait_past(present(store.claim_run(run_id, "w2", lease_seconds=0.2)))
    (taken,) = store.claim_orphaned_runs("w3")
    assert present(taken.lease_token) > third


@pytest.mark.parametrize("write", FENCED_WRITES)
def test_a_superseded_token_writes_nothing(store: WorkflowStore, run_id: str, write: str) -> None:
    old = present(store.claim_run(run_id, "w1", lease_seconds=0.2))
    FENCED_WRITES["set_node_state"](store, run_id, present(old.lease_token))  # fine while held
    wait_past(old)
    new = present(store.claim_run(run_id, "w2"))
    before = snapshot(store, run_id)
    with pytest.raises(ConflictError) as refused:
        FENCED_WRITES[write](store, run_id, present(old.lease_token))
    assert (
        str(refused.value) == f"run {run_id!r}: lease {old.lease_token} is no longer held"
    )  # no owner named
    assert snapshot(store, run_id) == before
    FENCED_WRITES[write](store, run_id, present(new.lease_token))  # the holder's own write lands


def test_an_expired_lease_nobody_took_still_holds(store: WorkflowStore, run_id: str) -> None:
    claimed = present(store.claim_run(run_id, "w1", lease_seconds=0.2))
    wait_past(claimed)
    token = present(claimed.lease_token)
    assert present(store.set_node_state(run_id, "a", progress=0.7, lease_token=token)).progress == 0.7
    assert present(store.append_node_message(run_id, "a", "still mine", lease_token=token)).messages == [
        "still mine"
    ]


@pytest.mark.parametrize(
    "end",
    [
        lambda s, r: s.release_run(r, "w1"),
        lambda s, r: s.update_run_status(r, "failed"),
        lambda s, r: s.cancel_run(r),
        lambda s, r: s.update_run_status(r, "completed", lease_token=present(s.get_run(r)).lease_token),
    ],
    ids=["release", "terminal status", "cancel", "fenced completion"],
)
def test_release_and_terminal_statuses_end_the_token(
    store: WorkflowStore, run_id: str, end: Callable[[WorkflowStore, str], object]
) -> None:
    token = present(present(store.claim_run(run_id, "w1")).lease_token)
    end(store, run_id)
    assert present(store.get_run(run_id)).lease_token is None
    before = snapshot(store, run_id)
    for write in FENCED_WRITES.values():  # the fence comes first, whatever the status says
        with pytest.raises(ConflictError, match=f"lease {token} is no longer held"):
            write(store, run_id, token)
    assert snapshot(store, run_id) == before


def test_pause_and_resume_under_the_lease(store: WorkflowStore, run_id: str) -> None:
    token = present(present(store.claim_run(run_id, "w1")).lease_token)
    paused = present(store.pause_run(run_id, checkpoint={"step": 2}, lease_token=token))
    assert paused.status.value == "paused" and paused.lease_token == token
    with pytest.raises(ConflictError, match=f"lease {token + 1} is no longer held"):
        store.resume_run(run_id, lease_token=token + 1)
    assert present(store.resume_run(run_id, lease_token=token)).status.value == "running"


def test_unfenced_writes_behave_as_before(store: WorkflowStore, run_id: str) -> None:
    store.claim_run(run_id, "w1")
    assert present(store.set_node_state(run_id, "a", progress=0.2)).progress == 0.2
    assert present(store.update_run_status(run_id, last_message="legacy")).last_message == "legacy"


@pytest.mark.parametrize("token", [0, -1, True, "7", 7.0, 2**70])
def test_a_bad_token_is_refused_with_nothing_written(
    store: WorkflowStore, run_id: str, token: object
) -> None:
    store.claim_run(run_id, "w1")
    before = snapshot(store, run_id)
    for write in FENCED_WRITES.values():
        with pytest.raises(ValidationError, match=r"^lease_token: expected None or the lease_token"):
            write(store, run_id, token)  # type: ignore[arg-type]
    assert snapshot(store, run_id) == before


def test_an_unknown_run_stays_unknown_with_a_token(store: WorkflowStore) -> None:
    store.ensure_project("p")
    assert store.update_run_status("nope", "running", lease_token=1) is None
    assert store.pause_run("nope", lease_token=1) is None


HOLDER = textwrap.dedent(
    """
    import sys
    from workflow_db import ConflictError, WorkflowStore, connect
    with connect(sys.argv[1]) as db:
        store = WorkflowStore(db)
        run = store.claim_run(sys.argv[2], "stalled", lease_seconds=float(sys.argv[3]))
        print(run.lease_token, run.lease_expires_at.isoformat(), flush=True)
        step = 0
        try:
            while True:  # works on its run until a write is refused
                step += 1
                store.append_node_message(run.id, "a", f"holder {step}", lease_token=run.lease_token)
                if step == 3:
                    print("working", flush=True)
                    if sys.argv[4] == "between-calls":
                        sys.stdin.readline()
        except ConflictError as exc:
            print("refused:", exc, flush=True)
    """
)


def test_a_holder_stopped_past_its_lease_writes_nothing_after_a_takeover(db_url: str, dialect: str) -> None:
    # On PostgreSQL the holder is stopped wherever it is, in the middle of a call too. A SQLite
    # process stopped inside a write holds the file's lock (every writer then waits for it, up
    # to the busy timeout), so there it is stopped between two calls.
    where = "between-calls" if dialect == "sqlite" else "anywhere"
    with connect(db_url) as db:
        store = WorkflowStore(db)
        run_id = store.create_run(make_graph(store, "p", "a").id, status="running").id
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, db_url, run_id, "1.0", where],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        token, expires = holder.stdout.readline().split()
        assert holder.stdout.readline() == "working\n"
        os.kill(holder.pid, signal.SIGSTOP)  # a GC pause, a slow minute...
        try:
            time.sleep(max(0.0, (datetime.fromisoformat(expires) - datetime.now(UTC)).total_seconds()) + 0.05)
            taken = present(store.claim_run(run_id, "survivor"))
            assert present(taken.lease_token) > int(token)
            store.append_node_message(run_id, "a", "taken over", lease_token=taken.lease_token)
        finally:
            os.kill(holder.pid, signal.SIGCONT)
        out, _ = holder.communicate("go on\n", timeout=60)
        assert out == f"refused: run {run_id!r}: lease {token} is no longer held\n"
        messages = present(store.get_node_state(run_id, "a")).messages
        assert messages[-1] == "taken over"  # nothing of the stalled holder after the takeover
        assert all(m.startswith("holder ") for m in messages[:-1])


RACER = textwrap.dedent(
    """
    import json, sys, time
    from workflow_db import ConflictError, WorkflowStore, connect
    url, owner, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    claims, writes, refused = [], 0, 0
    with connect(url) as db:
        store = WorkflowStore(db)
        print("ready", flush=True); sys.stdin.readline()  # start together
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            for run in store.claim_orphaned_runs(owner, lease_seconds=0.05, limit=5):
                claims.append([run.id, run.lease_token])
                for _ in range(2):
                    try:
                        store.append_node_message(
                            run.id, "a", f"{owner} {run.lease_token}", lease_token=run.lease_token
                        )
                        writes += 1
                    except ConflictError:
                        refused += 1
    print(json.dumps({"claims": claims, "writes": writes, "refused": refused}), flush=True)
    """
)


def test_racing_holders_only_ever_land_the_current_holders_writes(db_url: str) -> None:
    with connect(db_url) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a")
        ids = [store.create_run(graph.id, status="running", id=f"race-{n:04d}").id for n in range(1000)]
        orphan(store, *ids)
    racers = start_together(RACER, [[db_url, f"replica-{n}", "4"] for n in range(8)])
    issued: dict[tuple[str, int], str] = {}  # (run, token) -> the owner its claim went to
    for n, racer in enumerate(racers):
        out, _ = racer.communicate(timeout=300)
        assert racer.returncode == 0
        for run, token in json.loads(out)["claims"]:
            assert issued.setdefault((run, token), f"replica-{n}") == f"replica-{n}"  # a token is one claim's
    assert len({run for run, _ in issued}) > 100 and len(issued) > len(
        {run for run, _ in issued}
    )  # takeovers
    with connect(db_url) as db:
        store = WorkflowStore(db)
        for run_id in ids:
            state = store.get_node_state(run_id, "a")
            tokens = []
            for message in state.messages if state else []:
                owner, token = message.split()
                assert issued[(run_id, int(token))] == owner  # written by the claim that issued the token
                tokens.append(int(token))
            assert tokens == sorted(tokens)  # never a holder's write after a later claim's

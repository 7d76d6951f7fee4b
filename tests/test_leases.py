"""Leases across replicas: claim_run, claim_orphaned_runs, release_run, on both databases.

Leases use the database's clock, so expiry is real time: the tests use short
leases and wait just past them (never longer than a lease), no fake clock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
from factories import empty_database, make_graph, orphan, present, run_threads, start_together, wait_past
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from workflow_db import ConflictError, ValidationError, WorkflowRunStatus, WorkflowStore, connect


@pytest.fixture
def run_id(store: WorkflowStore) -> str:
    return store.create_run(make_graph(store, "p", "a").id, status="running").id


def test_claim_renew_and_release(store: WorkflowStore, run_id: str) -> None:
    claimed = present(store.claim_run(run_id, "host-1:42", lease_seconds=60))
    assert claimed.owner == "host-1:42" and claimed.lease_expires_at is not None
    assert claimed.lease_expires_at > datetime.now(UTC) + timedelta(seconds=50)
    renewed = present(store.claim_run(run_id, "host-1:42", lease_seconds=120))
    assert present(renewed.lease_expires_at) > claimed.lease_expires_at
    with pytest.raises(ConflictError) as held:
        store.claim_run(run_id, "host-2:7")
    assert (
        str(held.value) == f"run {run_id!r} is held by another owner until its lease expires"
    )  # names no one
    with pytest.raises(ConflictError, match="is not held by 'host-2:7'"):
        store.release_run(run_id, "host-2:7")
    released = present(store.release_run(run_id, "host-1:42"))
    assert released.owner is None and released.lease_expires_at is None
    assert present(store.claim_run(run_id, "host-2:7")).owner == "host-2:7"


def test_a_finished_run_is_released_and_cannot_be_claimed(store: WorkflowStore, run_id: str) -> None:
    store.claim_run(run_id, "w1")
    done = present(store.update_run_status(run_id, "completed"))
    assert done.owner is None and done.lease_expires_at is None
    with pytest.raises(ConflictError, match=f"run '{run_id}' is completed"):
        store.claim_run(run_id, "w1")
    other = store.create_run(done.workflow_id, status="running")
    store.claim_run(other.id, "w1")
    assert present(store.cancel_run(other.id)).owner is None


def test_unknown_runs_and_other_projects_are_absent(store: WorkflowStore, run_id: str) -> None:
    store.ensure_project("q")
    assert store.claim_run("nope", "w") is None and store.release_run("nope", "w") is None
    assert store.claim_run(run_id, "w", project_id="q") is None
    assert present(store.get_run(run_id)).owner is None
    orphan(store, run_id)
    assert store.claim_orphaned_runs("w", project_id="q") == []
    assert [r.id for r in store.claim_orphaned_runs("w", project_id="p")] == [run_id]


def test_renew_runs_renews_what_the_owner_holds_and_leaves_out_the_rest(
    store: WorkflowStore, run_id: str
) -> None:
    graph_id = present(store.get_run(run_id)).workflow_id
    paused, taken, finished, other = (store.create_run(graph_id, status="running").id for _ in range(4))
    held = {r: present(store.claim_run(r, "w1", lease_seconds=60)) for r in (run_id, paused, finished)}
    store.pause_run(paused)
    store.update_run_status(finished, "completed")
    wait_past(present(store.claim_run(taken, "w1", lease_seconds=0.2)))
    theirs = present(store.claim_run(taken, "w2", lease_seconds=60))  # taken over after the lease ran out
    store.claim_run(other, "w2", lease_seconds=60)

    asked = [finished, taken, paused, "no-such-run", other, run_id]
    renewed = store.renew_runs(asked, "w1", lease_seconds=300)
    assert [r.id for r in renewed] == [paused, run_id]  # the order asked; the rest left out
    for run in renewed:
        assert run.owner == "w1" and run.lease_token == held[run.id].lease_token  # the token kept
        assert present(run.lease_expires_at) > datetime.now(UTC) + timedelta(seconds=250)
    assert renewed[0].status is WorkflowRunStatus.PAUSED  # what tells its executor to stop
    after = present(store.get_run(taken))
    assert (after.owner, after.lease_token, after.lease_expires_at) == (
        "w2",
        theirs.lease_token,
        theirs.lease_expires_at,
    )
    assert present(store.get_run(finished)).owner is None
    assert store.renew_runs([run_id], "w1", project_id="elsewhere") == []
    assert store.renew_runs([], "w1") == []
    assert [r.id for r in store.renew_runs((run_id,), "w1", project_id="p")] == [run_id]


def test_renewals_of_the_same_runs_in_any_order_never_deadlock(store: WorkflowStore, run_id: str) -> None:
    graph_id = present(store.get_run(run_id)).workflow_id
    runs = [store.create_run(graph_id, status="running").id for _ in range(40)]
    tokens = {r: present(store.claim_run(r, "w1", lease_seconds=60)).lease_token for r in runs}

    def renew(index: int) -> None:
        order = random.Random(index).sample(runs, len(runs))
        for _ in range(15):
            assert [r.id for r in store.renew_runs(order, "w1", lease_seconds=60)] == order
            store.set_node_state(order[0], "a", progress=0.5, lease_token=tokens[order[0]])

    assert run_threads(4, renew) == []  # PostgreSQL locks them in id order whatever the order asked
    assert {r: present(store.get_run(r)).lease_token for r in runs} == tokens


@pytest.mark.parametrize(
    ("run_ids", "message"),
    [
        ("run-1", "run_ids: expected a collection of run ids, got str"),
        (None, "run_ids: expected a collection of run ids, got NoneType"),
        (["run-1", 7], "run_ids: expected a string id, got int"),
        (["run-1"] * 10_001, "run_ids: 10001 ids; one call renews at most 10000"),
    ],
)
def test_renew_runs_refuses_bad_ids_and_writes_nothing(
    store: WorkflowStore, run_id: str, run_ids: object, message: str
) -> None:
    before = present(store.claim_run(run_id, "w1", lease_seconds=60))
    with pytest.raises(ValidationError) as refused:
        store.renew_runs([run_id, *run_ids] if isinstance(run_ids, list) else run_ids, "w1")  # type: ignore[arg-type]
    assert str(refused.value) == message.replace("10001", "10002")
    assert present(store.get_run(run_id)).lease_expires_at == before.lease_expires_at


@pytest.mark.parametrize(
    "call",
    [
        lambda s, r: s.claim_run(r, "w", lease_seconds=0),
        lambda s, r: s.claim_run(r, "w", lease_seconds=-1),
        lambda s, r: s.claim_run(r, "w", lease_seconds=float("nan")),
        lambda s, r: s.claim_run(r, "w", lease_seconds=float("inf")),
        lambda s, r: s.claim_run(r, "w", lease_seconds="60"),
        lambda s, r: s.claim_run(r, ""),
        lambda s, r: s.claim_run(r, None),
        lambda s, r: s.claim_orphaned_runs("w", limit=0),
        lambda s, r: s.claim_orphaned_runs("w", status="completed"),
        lambda s, r: s.claim_orphaned_runs("w", status=["running", "failed"]),
        lambda s, r: s.release_run(r, ""),
    ],
)
def test_bad_lease_input_is_refused_with_nothing_written(
    store: WorkflowStore, run_id: str, call: object
) -> None:
    orphan(store, run_id)
    before = store.get_run(run_id)
    with pytest.raises(ValidationError, match=r"^(lease_seconds|owner|limit|status): "):
        call(store, run_id)  # type: ignore[operator]
    assert store.get_run(run_id) == before


def test_an_expired_lease_can_be_taken_over(store: WorkflowStore, run_id: str) -> None:
    short = present(store.claim_run(run_id, "w1", lease_seconds=0.3))
    with pytest.raises(ConflictError):
        store.claim_run(run_id, "w2")
    assert store.claim_orphaned_runs("w2") == []  # live lease: not an orphan
    time.sleep(max(0.0, (present(short.lease_expires_at) - datetime.now(UTC)).total_seconds()) + 0.05)
    assert [r.owner for r in store.claim_orphaned_runs("w2", lease_seconds=60)] == ["w2"]


def test_orphans_are_runs_nobody_holds_or_touched_for_a_lease(store: WorkflowStore) -> None:
    graph = make_graph(store, "p", "a")
    stale = [store.create_run(graph.id, status="running", id=f"stale-{n:02d}").id for n in range(12)]
    fresh = store.create_run(graph.id, status="running").id
    pending = store.create_run(graph.id, status="pending").id
    for age, run in enumerate(reversed(stale)):
        orphan(store, run, seconds_ago=3600 + age)
    orphan(store, pending)
    first = store.claim_orphaned_runs("w", limit=10)  # the ten touched longest ago
    assert {r.owner for r in first} == {"w"}
    assert sorted(r.id for r in first) == [f"stale-{n:02d}" for n in range(10)]
    assert sorted(r.id for r in store.claim_orphaned_runs("w", limit=10)) == ["stale-10", "stale-11"]
    assert store.claim_orphaned_runs("w") == []  # the fresh run and the pending one are not orphans
    assert [r.id for r in store.claim_orphaned_runs("w", status=["pending", "running"])] == [pending]
    assert present(store.get_run(fresh)).owner is None


CLAIMER = textwrap.dedent(
    """
    import json, sys
    from workflow_db import WorkflowStore, connect
    url, owner = sys.argv[1], sys.argv[2]
    claimed, empty = [], 0
    with connect(url) as db:
        store = WorkflowStore(db)
        sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()  # start together
        while empty < 3:  # a few empty answers in a row: the others have the rest
            runs = store.claim_orphaned_runs(owner, lease_seconds=600, limit=10)
            claimed += [run.id for run in runs]
            empty = 0 if runs else empty + 1
    sys.stdout.write(json.dumps(claimed) + "\\n")
    """
)


def test_eight_processes_claim_a_thousand_orphans_each_exactly_once(db_url: str) -> None:
    with connect(db_url) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a")
        ids = [store.create_run(graph.id, status="running", id=f"orphan-{n:04d}").id for n in range(1000)]
        orphan(store, *ids)
    claimers = start_together(CLAIMER, [[db_url, f"replica-{n}"] for n in range(8)])
    claimed = {}
    for n, claimer in enumerate(claimers):
        out, _ = claimer.communicate(timeout=300)
        assert claimer.returncode == 0
        claimed[f"replica-{n}"] = json.loads(out.splitlines()[-1])
    every_claim = [run_id for runs in claimed.values() for run_id in runs]
    assert sorted(every_claim) == ids  # each run exactly once: none twice, none missed
    with connect(db_url) as db:
        store = WorkflowStore(db)
        for owner, runs in claimed.items():
            assert {present(store.get_run(run_id)).owner for run_id in runs} <= {owner}


OWNER = textwrap.dedent(
    """
    import json, sys, time
    from workflow_db import WorkflowStore, connect
    with connect(sys.argv[1]) as db:
        runs = WorkflowStore(db).claim_orphaned_runs("doomed", lease_seconds=float(sys.argv[2]), limit=5)
        sys.stdout.write(json.dumps([[r.id, r.lease_expires_at.isoformat()] for r in runs]) + "\\n")
        sys.stdout.flush()
        time.sleep(600)  # working on them, until SIGKILL
    """
)


def test_a_killed_owners_runs_are_claimed_after_its_lease_and_not_before(db_url: str) -> None:
    with connect(db_url) as db:
        store = WorkflowStore(db)
        graph = make_graph(store, "p", "a")
        ids = [store.create_run(graph.id, status="running").id for _ in range(5)]
        orphan(store, *ids)
        owner = subprocess.Popen(
            [sys.executable, "-c", OWNER, db_url, "5"], stdout=subprocess.PIPE, text=True
        )
        assert owner.stdout is not None
        held = json.loads(owner.stdout.readline())
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        assert sorted(run_id for run_id, _ in held) == sorted(ids)
        assert store.claim_orphaned_runs("survivor") == []  # the dead owner's lease still runs
        with pytest.raises(ConflictError, match="held by another owner"):
            store.claim_run(ids[0], "survivor")
        expiry = max(datetime.fromisoformat(at) for _, at in held)
        time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.05)  # just past the lease
        taken = store.claim_orphaned_runs("survivor", limit=10)
        assert sorted(r.id for r in taken) == sorted(ids) and {r.owner for r in taken} == {"survivor"}
        assert all(r.status is WorkflowRunStatus.RUNNING for r in taken)


RUNS, OWNERS = ["r0", "r1", "r2"], ["w1", "w2"]
LIVE, EXPIRING = 60.0, 0.05  # a lease that outlives the test, and one that is over before the next step


def make_lease_machine(store: WorkflowStore) -> type[RuleBasedStateMachine]:
    """Claims, renewals, releases, expiry and finishing against a model of who holds what."""

    class Leases(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            empty_database(store.db)
            graph = make_graph(store, "p", "a")
            for run_id in RUNS:
                store.create_run(graph.id, status="running", id=run_id)
            self.owner: dict[str, str | None] = dict.fromkeys(RUNS)
            self.expired: set[str] = set()
            self.finished: set[str] = set()

        def may_claim(self, run_id: str, owner: str) -> bool:
            holder = self.owner[run_id]
            return run_id not in self.finished and (holder in (None, owner) or run_id in self.expired)

        def claim(self, run_id: str, owner: str, lease: float) -> None:
            if self.may_claim(run_id, owner):
                assert present(store.claim_run(run_id, owner, lease_seconds=lease)).owner == owner
                self.owner[run_id] = owner
                self.expired.discard(run_id)
            else:
                with pytest.raises(
                    ConflictError, match="completed" if run_id in self.finished else "held by"
                ):
                    store.claim_run(run_id, owner, lease_seconds=lease)

        @rule(run_id=st.sampled_from(RUNS), owner=st.sampled_from(OWNERS))
        def claim_or_renew(self, run_id: str, owner: str) -> None:
            self.claim(run_id, owner, LIVE)

        @rule(run_id=st.sampled_from(RUNS), owner=st.sampled_from(OWNERS))
        def claim_briefly_and_let_it_expire(self, run_id: str, owner: str) -> None:
            allowed = self.may_claim(run_id, owner)
            self.claim(run_id, owner, EXPIRING)
            if allowed:
                time.sleep(2 * EXPIRING)  # bounded by the lease: the lease is over afterwards
                self.expired.add(run_id)

        @rule(run_id=st.sampled_from(RUNS), owner=st.sampled_from(OWNERS))
        def release(self, run_id: str, owner: str) -> None:
            if self.owner[run_id] == owner:
                assert present(store.release_run(run_id, owner)).owner is None
                self.owner[run_id] = None
                self.expired.discard(run_id)
            else:
                with pytest.raises(ConflictError, match="is not held by"):
                    store.release_run(run_id, owner)

        @rule(owner=st.sampled_from(OWNERS))
        def renew_all(self, owner: str) -> None:
            expected = [r for r in RUNS if self.owner[r] == owner and r not in self.finished]
            renewed = store.renew_runs([*RUNS, "unknown"], owner, lease_seconds=LIVE)
            assert [r.id for r in renewed] == expected and {r.owner for r in renewed} <= {owner}
            self.expired -= set(expected)

        @rule(owner=st.sampled_from(OWNERS))
        def claim_orphans(self, owner: str) -> None:
            expected = {r for r in self.expired if self.owner[r] is not None and r not in self.finished}
            claimed = store.claim_orphaned_runs(owner, lease_seconds=LIVE, limit=10)
            assert {r.id for r in claimed} == expected  # unowned runs were touched just now: not orphans
            for run_id in expected:
                self.owner[run_id] = owner
            self.expired -= expected

        @rule(run_id=st.sampled_from(RUNS))
        def finish(self, run_id: str) -> None:
            assert present(store.update_run_status(run_id, "completed")).owner is None
            self.owner[run_id] = None
            self.finished.add(run_id)
            self.expired.discard(run_id)

        @invariant()
        def owners_match(self) -> None:
            for run_id in RUNS:
                assert present(store.get_run(run_id)).owner == self.owner[run_id]

    return Leases


def test_leases_match_the_model(store: WorkflowStore) -> None:
    # Fewer sequences than the other machines: these wait out real leases.
    run_state_machine_as_test(
        make_lease_machine(store), settings=settings(max_examples=30, stateful_step_count=15, deadline=None)
    )

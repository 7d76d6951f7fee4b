"""Read replicas: which one a read may go to, and what this process knows of each (no I/O here).

The sync and the async PostgreSQL dialects do the reading; this module holds
what they share: the WAL positions (read-your-writes), the order in which
replicas are tried, and when one that failed or fell behind is tried again.

Read-your-writes by WAL position: each commit of this process (of this task,
on the async store) is followed, in the same pipeline, by
``pg_current_wal_insert_lsn()``, a position at or past the commit's record. A
read sent to a replica is preceded, in the same pipeline, by
``pg_last_wal_replay_lsn()``: the replica replays a commit record before
anything after it, so once it has replayed up to that position every snapshot
taken there sees the commit.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

REPLICA_URLS_ENVIRONMENT_VARIABLE = "WORKFLOW_DB_REPLICA_URLS"
DEFAULT_REPLICA_WAIT = 0.05
"""Seconds a read waits for a replica (a pooled connection, or its replay of the caller's commits)
before it reads from the primary."""
RETRY_SECONDS = (0.5, 10.0)
"""After a replica failed: the first and the longest pause before a read tries it again."""
BEHIND_SECONDS = 1.0
"""After a replica made a read wait longer than the wait allowed: how long reads skip it."""
RECONNECT_TIMEOUT = 0.001
"""A replica pool's ``reconnect_timeout``: it gives up on a failed connection at once, and makes a new
one when a read asks for it (the pool's own retries, spaced up to minutes apart, would keep a replica
that is back unused); :data:`RETRY_SECONDS` space the reads that try it."""
ANSWER_SECONDS = 2.0
"""How long a read waits for a replica's answer, past the replica wait; never more than half the
call's time left. A replica that gives none by then (frozen: a stopped process, a paused VM, packets
silently dropped, where the connection stays open) is skipped like a failed one, and the read goes to
the primary with the rest of its time."""
POLL_SECONDS = (0.0005, 0.005)
"""While waiting for a replica to replay a commit: the first and the longest pause between looks."""

WAL_POSITION = "SELECT pg_current_wal_insert_lsn()"
"""On the primary, right after a commit: a WAL position at or past the commit's record."""
REPLAY_POSITION = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() END"
"""On a replica: how far it has replayed (NULL on a server that is not in recovery: a promoted one)."""
RECHECK_SECONDS = 1.0
"""A read whose target a replica had already replayed when last looked sends only the read; it
looks again (in the same round trip) at least this often, so a promoted replica is noticed."""

# Several URLs in one variable: a libpq multi-host URL holds commas of its own.
_NEXT_URL = re.compile(r"\s*,\s*(?=postgres(?:ql)?://)", re.IGNORECASE)


def replica_urls_from_environment() -> list[str]:
    """``$WORKFLOW_DB_REPLICA_URLS`` as a list (comma-separated ``postgresql://`` URLs; none if unset)."""
    value = os.environ.get(REPLICA_URLS_ENVIRONMENT_VARIABLE, "").strip()
    return [url for url in _NEXT_URL.split(value) if url] if value else []


def lsn(text: str | None) -> int | None:
    """A ``pg_lsn`` as PostgreSQL writes it (``16/B374D848``) as a number; None stays None."""
    if text is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def position_in(row: Any) -> str | None:
    """The WAL position in a row of :data:`REPLAY_POSITION` or :data:`WAL_POSITION` (None: the
    server is not a replica)."""
    return None if row is None else row[0]


@dataclass(eq=False)
class Replica:
    """One replica: its pool, and what this process has seen of it."""

    pool: Any
    """Its ``psycopg_pool`` connection pool (sync or async)."""
    display_url: str
    """Its URL with any password hidden."""
    replayed: int = 0
    """The WAL position it had replayed when this process last looked."""
    checked_at: float = -math.inf
    """``time.monotonic()`` when this process last looked."""
    skipped_until: float = 0.0
    """``time.monotonic()`` before which reads do not try it."""
    failures: int = 0
    """Failures in a row: the pause before the next try doubles with each."""


@dataclass
class ReplicaSet:
    """The replicas of one database and the rules for choosing among them."""

    replicas: list[Replica]
    wait: float = DEFAULT_REPLICA_WAIT
    """Seconds a read waits for a replica before it reads from the primary."""
    _turns: Iterator[int] = field(init=False)

    def __post_init__(self) -> None:
        self._turns = itertools.cycle(range(len(self.replicas)))

    def candidates(self) -> list[Replica]:
        """The replicas a read may try now, starting with the next one in turn."""
        now = time.monotonic()
        first = next(self._turns)
        ordered = self.replicas[first:] + self.replicas[:first]
        return [replica for replica in ordered if replica.skipped_until <= now]

    def answer_by(self, deadline: float) -> float:
        """When a read with the call's ``deadline`` stops waiting for a replica (see ANSWER_SECONDS)."""
        now = time.monotonic()
        return now + min(self.wait + ANSWER_SECONDS, max(0.0, deadline - now) / 2)

    def must_check(self, replica: Replica, target: int) -> bool:
        """Whether a read for ``target`` must look at ``replica``'s replay position first: the replay
        position never goes back, so not if it had replayed ``target`` when last looked, lately."""
        return target > replica.replayed or time.monotonic() - replica.checked_at > RECHECK_SECONDS

    def caught_up(self, replica: Replica, position: str | None, target: int) -> bool | None:
        """Whether ``replica``, having replayed up to ``position``, has replayed ``target`` (this
        process's or task's commits); None if it is not a replica at all (then it is skipped)."""
        replayed = lsn(position)
        if replayed is None:
            self.failed(replica, "it is not in recovery (promoted?)")
            return None
        if replica.failures:
            logger.info("replica %s answers again; reads go to it", replica.display_url)
            replica.failures = 0
        replica.replayed = max(replica.replayed, replayed)
        replica.checked_at = time.monotonic()
        return replayed >= target

    def failed(self, replica: Replica, reason: str) -> None:
        """``replica`` could not serve a read: skip it for a while (longer after each failure in a row)."""
        first, longest = RETRY_SECONDS
        pause = min(first * 2**replica.failures, longest)
        replica.failures += 1
        replica.replayed, replica.checked_at = 0, -math.inf  # it may come back as another server
        replica.skipped_until = time.monotonic() + pause
        logger.warning(
            "replica %s: %s; reads go elsewhere, trying it again in %g s", replica.display_url, reason, pause
        )

    def no_connection(self, replica: Replica, pool_stats: dict[str, int]) -> None:
        """No pooled connection to ``replica`` within :attr:`wait`: down, unless all of them are in use
        (then this read goes to the primary and the next one tries it again)."""
        if pool_stats.get("pool_size", 0) < pool_stats.get("pool_max", 1):
            self.failed(replica, f"no connection within {self.wait:g} s")

    def behind(self, replica: Replica) -> None:
        """``replica`` had not replayed the caller's commits within :attr:`wait`: skip it for a while."""
        replica.skipped_until = time.monotonic() + BEHIND_SECONDS
        logger.info(
            "replica %s is more than %g s behind this process's commits; reads skip it for %g s",
            replica.display_url,
            self.wait,
            BEHIND_SECONDS,
        )


def poll_pauses(deadline: float) -> Iterator[float]:
    """The pauses between looks at a replica's replay position until ``deadline`` (growing)."""
    first, longest = POLL_SECONDS
    pause = first
    while (left := deadline - time.monotonic()) > 0:
        yield min(pause, left)
        pause = min(pause * 2, longest)

"""Every SQL statement the store runs, written once with ``:name`` placeholders.

The dialect adapter converts the placeholder style once per text. The two
statements that differ between SQLite and PostgreSQL (appending to a JSON
array, and measuring it) are :class:`DialectSQL` pairs kept side by side.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from .dialects import DialectSQL
from .dialects.base import SQL
from .models import TERMINAL_NODE_STATUSES, TERMINAL_RUN_STATUSES

MIGRATIONS_TABLE_EXISTS = DialectSQL(
    sqlite="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workflow_db_migrations'",
    postgresql="SELECT 1 WHERE to_regclass('workflow_db_migrations') IS NOT NULL",
)
NEWEST_MIGRATION = "SELECT max(version) FROM workflow_db_migrations"


def _sql_list(statuses: Iterable[StrEnum]) -> str:
    """``('a', 'b')``: statuses as SQL literals (partial indexes and generic plans need literals)."""
    return "(" + ", ".join(f"'{status.value}'" for status in sorted(statuses)) + ")"


Statement = TypeVar("Statement", bound=SQL)


@dataclass(frozen=True)
class Scoped(Generic[Statement]):
    """A by-id statement in two forms: for any project, and only inside ``:project_id``.

    The scope is a condition of the statement itself, so checking it costs no
    round trip; an object of another project simply matches nothing.
    """

    any_project: Statement
    one_project: Statement

    @staticmethod
    def of(template: str, scope: str) -> Scoped[str]:
        """Fill ``{scope}`` in ``template`` with nothing, and with ``scope``."""
        return Scoped(template.format(scope=""), template.format(scope=scope))

    def pick(self, project_id: str | None) -> Statement:
        """The form for ``project_id`` (None: any project)."""
        return self.any_project if project_id is None else self.one_project


IN_PROJECT = " AND project_id = :project_id"
RUN_IN_PROJECT = (
    " AND EXISTS (SELECT 1 FROM workflow_runs AS r WHERE r.id = :run_id AND r.project_id = :project_id)"
)
"""The scope of a node-state statement: its run belongs to the project."""

BOUNDED_LOCK_WAIT = "/* bounded lock wait */ TRUE"
"""A condition every write of the store carries, evaluated before the write waits for a row lock.

The PostgreSQL dialect turns it into ``set_config('lock_timeout', ..., true)``
(the connection's timeout, for this statement's transaction only: it works
through PgBouncer in transaction mode, and costs no round trip); on SQLite,
whose writers queue for the busy timeout, it stays ``TRUE``.
"""

FENCED = " AND (lease_token = :lease_token OR :lease_token IS NULL)"
"""The fence of a write on behalf of a lease (``lease_token=``), in the write's own WHERE.

Given, the run must be held under that very token: a later claim issued
another, a release or a terminal status cleared it. None: unfenced.
"""
FENCED_NODE_RUN = FENCED.replace("(lease_token", "(r.lease_token")

TERMINAL_RUN_SQL = _sql_list(TERMINAL_RUN_STATUSES)
TERMINAL_NODE_SQL = _sql_list(TERMINAL_NODE_STATUSES)
OUTSIDE_GRAPH_POSITION = 2_147_483_647
"""``position`` of a node state whose node is not in the run's graph version: sorts last."""

# -- projects -----------------------------------------------------------------------

PROJECT_COLUMNS = "id, name, created_at"

ENSURE_PROJECT = f"""
    INSERT INTO projects (id, name, created_at) SELECT :id, :name, :now WHERE {BOUNDED_LOCK_WAIT}
    ON CONFLICT (id) DO UPDATE SET name = projects.name
    RETURNING {PROJECT_COLUMNS}"""

GET_PROJECT = f"SELECT {PROJECT_COLUMNS} FROM projects WHERE id = :id"

# -- graphs ---------------------------------------------------------------------------

GRAPH_COLUMNS = "id, project_id, name, description, graph_json, version, created_at, updated_at"

INSERT_GRAPH = f"""
    INSERT INTO workflow_graphs
        (id, project_id, name, description, graph_json, version, created_at, updated_at)
    SELECT :id, :project_id, :name, :description, :graph_json, 1, :now, :now WHERE {BOUNDED_LOCK_WAIT}
    RETURNING {GRAPH_COLUMNS}"""

GET_GRAPH = Scoped.of(f"SELECT {GRAPH_COLUMNS} FROM workflow_graphs WHERE id = :id{{scope}}", IN_PROJECT)

GET_GRAPH_VERSION = Scoped.of(
    """
    SELECT g.id, g.project_id, v.name, v.description, v.graph_json, v.version,
           g.created_at, v.written_at
    FROM workflow_graph_versions AS v JOIN workflow_graphs AS g ON g.id = v.graph_id
    WHERE v.graph_id = :id AND v.version = :version{scope}""",
    " AND g.project_id = :project_id",
)

GRAPH_EXISTS = Scoped.of("SELECT 1 FROM workflow_graphs WHERE id = :id{scope}", IN_PROJECT)

# Guarded by the version that was read, so a concurrent edit is never overwritten unseen.
UPDATE_GRAPH = f"""
    UPDATE workflow_graphs SET
        name = COALESCE(:name, name),
        description = COALESCE(:description, description),
        graph_json = COALESCE(:graph_json, graph_json),
        version = version + 1,
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id = :id AND version = :read_version AND {BOUNDED_LOCK_WAIT}
    RETURNING {GRAPH_COLUMNS}"""


# A cascade delete locks the graph first: a create_run racing it then either
# committed before (its run is deleted too) or waits and finds no graph.
# (SQLite has one writer at a time: the plain SELECT is enough there.)
def _locking(sql: str) -> DialectSQL:
    return DialectSQL(sqlite=sql, postgresql=f"{sql} FOR UPDATE")


_LOCK_GRAPH = Scoped.of(
    f"SELECT 1 FROM workflow_graphs WHERE id = :id AND {BOUNDED_LOCK_WAIT}{{scope}}", IN_PROJECT
)
LOCK_GRAPH = Scoped(_locking(_LOCK_GRAPH.any_project), _locking(_LOCK_GRAPH.one_project))
DELETE_GRAPH = Scoped.of(
    f"DELETE FROM workflow_graphs WHERE id = :id AND {BOUNDED_LOCK_WAIT}{{scope}}", IN_PROJECT
)
# A graph's runs are always in its project (INSERT_RUN and the importer see to it).
DELETE_GRAPH_RUNS = Scoped.of(
    f"DELETE FROM workflow_runs WHERE workflow_id = :id AND {BOUNDED_LOCK_WAIT}{{scope}}", IN_PROJECT
)
COUNT_GRAPH_RUNS = "SELECT count(*) FROM workflow_runs WHERE workflow_id = :id"

LIST_GRAPHS = f"SELECT {GRAPH_COLUMNS} FROM workflow_graphs"
GRAPH_ORDER = " ORDER BY created_at DESC, id DESC"
GRAPH_AFTER = "(created_at, id) < (:after_at, :after_id)"
# An id of another project (when scoped) reads as NULL: the page is empty and the id is checked.
GRAPH_AFTER_ID = Scoped.of(
    "(created_at, id) < ((SELECT created_at FROM workflow_graphs WHERE id = :after_id{scope}), :after_id)",
    IN_PROJECT,
)

# -- runs -------------------------------------------------------------------------------

_RUN_STORED_AT_START = (
    "id, project_id, workflow_id, workflow_version, status, input_json, output_json, "
    "started_at, finished_at, last_message, updated_at"
)
"""The columns create_run and the importer write; the lifecycle's start empty."""
RUN_COLUMNS = f"{_RUN_STORED_AT_START}, paused_at, checkpoint_json, owner, lease_expires_at, lease_token"

# One statement: pins the graph's current version and (by trigger) creates the
# PENDING node states of that version. An unknown graph (or one of another
# project than :project_id) or a taken id writes nothing and returns no row: the
# server never refuses it, so inside a transaction it needs no savepoint. On
# PostgreSQL it holds the graph's key (FOR KEY SHARE) from its read: a cascade
# delete that locked the graph first is waited for, and then the graph is gone
# (no row, not a foreign-key error); one that comes after deletes this run too.
_INSERT_RUN = f"""
    INSERT INTO workflow_runs ({_RUN_STORED_AT_START})
    SELECT :id, g.project_id, g.id, g.version, :status, :input_json, NULL, :now, :finished_at,
           :last_message, :now
    FROM workflow_graphs AS g
    WHERE g.id = :workflow_id AND g.project_id = COALESCE(:project_id, g.project_id) AND {BOUNDED_LOCK_WAIT}
    {{lock}}ON CONFLICT (id) DO NOTHING
    RETURNING {RUN_COLUMNS}"""
INSERT_RUN = DialectSQL(
    sqlite=_INSERT_RUN.format(lock=""), postgresql=_INSERT_RUN.format(lock="FOR KEY SHARE OF g\n    ")
)

GET_RUN = Scoped.of(f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = :id{{scope}}", IN_PROJECT)
RUN_EXISTS = Scoped.of("SELECT 1 FROM workflow_runs WHERE id = :id{scope}", IN_PROJECT)

LIST_RUNS = f"SELECT {RUN_COLUMNS} FROM workflow_runs"
COUNT_RUNS = "SELECT count(*) FROM workflow_runs"
RUN_ORDER = " ORDER BY started_at DESC, id DESC"
RUN_AFTER = "(started_at, id) < (:after_at, :after_id)"
RUN_AFTER_ID = Scoped.of(
    "(started_at, id) < ((SELECT started_at FROM workflow_runs WHERE id = :after_id{scope}), :after_id)",
    IN_PROJECT,
)

_UPDATE_RUN_STATUS = f"""
    UPDATE workflow_runs SET
        status = COALESCE(:status, status),
        finished_at = CASE
            WHEN :finish THEN COALESCE(finished_at, :now)
            WHEN :reopen AND status IN {TERMINAL_RUN_SQL} THEN NULL
            ELSE finished_at END,
        last_message = COALESCE(:last_message, last_message),
        output_json = COALESCE(:output_json, output_json),
        paused_at = CASE WHEN :leaves_pause THEN NULL ELSE paused_at END,
        owner = CASE WHEN :release THEN NULL ELSE owner END,
        lease_expires_at = CASE WHEN :release THEN NULL ELSE lease_expires_at END,
        lease_token = CASE WHEN :release THEN NULL ELSE lease_token END,
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id = :id AND {BOUNDED_LOCK_WAIT}{FENCED}{{scope}}"""
UPDATE_RUN_STATUS = Scoped.of(f"{_UPDATE_RUN_STATUS} RETURNING {RUN_COLUMNS}", IN_PROJECT)
UPDATE_RUN_STATUS_IF = Scoped.of(
    f"{_UPDATE_RUN_STATUS} AND status = :expected_status RETURNING {RUN_COLUMNS}", IN_PROJECT
)

PRUNE_RUNS = f"""
    DELETE FROM workflow_runs WHERE id IN (
        SELECT id FROM workflow_runs
        WHERE finished_at < :cutoff AND status IN {TERMINAL_RUN_SQL}{{project}}
        LIMIT :batch_size)
    AND {BOUNDED_LOCK_WAIT}"""
PRUNE_RUNS_ANY_PROJECT = PRUNE_RUNS.format(project="")
PRUNE_RUNS_OF_PROJECT = PRUNE_RUNS.format(project=" AND project_id = :project_id")

# -- node states ----------------------------------------------------------------------

NODE_COLUMNS = "run_id, node_id, status, progress, messages_json, started_at, completed_at, error"
"""A node state's columns, in the order rows.py reads them (``messages_json``: see NODE_MESSAGES)."""

# A node's messages (schema 5): the list set_node_state wrote (messages_json),
# then the messages appended since, one row each (workflow_node_messages, in
# seq order): an append writes one small row whatever the count. A node with
# nothing appended (most) is read from its column alone.
NODE_MESSAGES = DialectSQL(
    sqlite="""CASE WHEN {ns}.appended = 0 THEN {ns}.messages_json ELSE (
        SELECT json_group_array(m) FROM (
            SELECT value AS m FROM json_each({ns}.messages_json)
            UNION ALL
            SELECT message FROM (
                SELECT message FROM workflow_node_messages AS nm
                WHERE nm.run_id = {ns}.run_id AND nm.node_id = {ns}.node_id ORDER BY nm.seq))) END""",
    # A function (schema 11), not a subquery: PostgreSQL initialises a statement's subqueries (their
    # tables and indexes opened) before it runs, whether or not a row needs them; a function call
    # costs only where a node has appended messages.
    postgresql="""CASE WHEN {ns}.appended = 0 THEN {ns}.messages_json::json ELSE
        workflow_node_messages_listed({ns}.run_id, {ns}.node_id, {ns}.messages_json, {ns}.appended) END""",
)


def _node_columns(dialect: str, ns: str = "ns") -> str:
    """NODE_COLUMNS of the node-state table called ``ns`` in the statement, the messages read whole.

    SQLite's RETURNING knows the table by its name only, not by its alias.
    """
    messages = getattr(NODE_MESSAGES, dialect).replace("{ns}", ns)
    return ", ".join(
        messages if column == "messages_json" else f"{ns}.{column}"
        for column in (name.strip() for name in NODE_COLUMNS.split(","))
    )


def _with_node_columns(template: str) -> DialectSQL:
    """``template`` with ``{node_columns}`` filled for each dialect."""
    return DialectSQL(
        *(template.replace("{node_columns}", _node_columns(dialect)) for dialect in ("sqlite", "postgresql"))
    )


def _scoped_node_read(template: str, scope: str) -> Scoped[DialectSQL]:
    """``template``'s two scopes (``{scope}``), each with its node columns for each dialect."""
    unscoped, scoped = (
        template.format(scope=filled, node_columns="{node_columns}") for filled in ("", scope)
    )
    return Scoped(_with_node_columns(unscoped), _with_node_columns(scoped))


# The status a node state takes on update: the one forced by the caller (a
# status, or FAILED for an error), else RUNNING if progress arrives while PENDING.
_NEW_NODE_STATUS = (
    "COALESCE(:forced_status, CASE WHEN :promote AND ns.status = 'pending' THEN 'running' ELSE ns.status END)"
)
_ENTERS_RUNNING = f"({_NEW_NODE_STATUS} = 'running' AND ns.status <> 'running')"

# Every node-state write selects its run: no row for an unknown run, a run of
# another project (when scoped) or a CANCELLED run, whose node states are
# final. Every write sets the state's updated_at, moves its run's (the
# heartbeat) and files the node's change for the feed: on SQLite by triggers;
# on PostgreSQL (schema 11) in the statement itself, cheaper than trigger
# calls. There the run row is locked first, so a cancel_run in flight is
# waited for and then seen: no node enters RUNNING under a cancelled run
# (SQLite has one writer at a time). The statement inserts a node state with
# ``noted`` true and flips it on update, which tells the trigger kept for
# other writers to leave the row alone.
_NODE_RUN_WHERE = f"""
    WHERE r.id = :run_id AND r.status <> 'cancelled'
      AND {BOUNDED_LOCK_WAIT}{FENCED_NODE_RUN}{{scope}}"""
_NODE_RUN = "\n    FROM workflow_runs AS r" + _NODE_RUN_WHERE
_NOTED = {
    "sqlite": {"noted_column": "", "noted_value": "", "noted_update": ""},
    "postgresql": {
        "noted_column": ", noted",
        "noted_value": ", true",
        "noted_update": "noted = NOT ns.noted,",
    },
}
_NOTING_NODE_WRITE = """
    WITH {run},
    ns AS ({write}),{heartbeat}
    change AS (
        INSERT INTO workflow_changes (run_id, node_id, project_id, seq)
        SELECT ns.run_id, ns.node_id, r.project_id, NULL FROM ns, r
        ON CONFLICT (run_id, node_id) DO UPDATE SET seq = NULL WHERE workflow_changes.seq IS NOT NULL)
    SELECT * FROM ns"""
"""A PostgreSQL node write (``write``, selecting its run from ``r``) with its heartbeat and its change."""
# A write that always writes once its run is found beats the run as it locks it (one row version);
# one that may write nothing (an append that would not fit) locks the run, and beats it after.
_BEATING_RUN = """r AS (
    UPDATE workflow_runs AS r SET updated_at = GREATEST(r.updated_at, :now){selection}
    RETURNING r.id, r.project_id)"""
_LOCKED_RUN = "r AS (SELECT r.id, r.project_id{selection} FOR NO KEY UPDATE OF r)"
_LATE_HEARTBEAT = """
    heartbeat AS (
        UPDATE workflow_runs AS beat SET updated_at = :now
        FROM ns WHERE beat.id = ns.run_id AND beat.updated_at < :now),"""


def _node_write(template: str, *, may_write_nothing: bool = False) -> Scoped[DialectSQL]:
    """``template`` with its run selection, scoped or not, for each dialect.

    ``may_write_nothing``: the write has a condition of its own, past finding its run.
    """

    def text(dialect: str, scope: str) -> str:
        selection = _NODE_RUN.format(scope=scope)
        where = _NODE_RUN_WHERE.format(scope=scope)
        if dialect == "sqlite":
            filled = template.format(run=selection, **_NOTED[dialect])
            return filled.replace("{node_columns}", _node_columns(dialect, "workflow_node_states"))
        write = template.format(run="\n    FROM r", **_NOTED[dialect])
        if may_write_nothing:
            run, heartbeat = _LOCKED_RUN.format(selection=selection), _LATE_HEARTBEAT
        else:
            run, heartbeat = _BEATING_RUN.format(selection=where), ""
        filled = _NOTING_NODE_WRITE.format(run=run, write=write, heartbeat=heartbeat)
        return filled.replace("{node_columns}", _node_columns(dialect, "ns"))

    return Scoped(
        *(
            DialectSQL(sqlite=text("sqlite", scope), postgresql=text("postgresql", scope))
            for scope in ("", " AND r.project_id = :project_id")
        )
    )


# Messages given replace the list: messages_json holds it whole and the rows
# appended before are deleted (schema 5's trigger, when ``appended`` drops to 0).
SET_NODE_STATE = _node_write(
    f"""
    INSERT INTO workflow_node_states AS ns
        (run_id, node_id, position, status, progress, messages_json, started_at, completed_at, error,
         updated_at, messages_bytes{{noted_column}})
    SELECT r.id, :node_id, {OUTSIDE_GRAPH_POSITION}, :insert_status, :insert_progress,
           :insert_messages_json, :insert_started_at, :insert_completed_at, :error, :now,
           :insert_messages_bytes{{noted_value}}{{run}}
    ON CONFLICT (run_id, node_id) DO UPDATE SET
        {{noted_update}}
        updated_at = :now,
        status = {_NEW_NODE_STATUS},
        progress = COALESCE(:progress, ns.progress),
        messages_json = COALESCE(:messages_json, ns.messages_json),
        messages_bytes = COALESCE(:messages_bytes, ns.messages_bytes),
        appended = CASE WHEN :messages_bytes IS NULL THEN ns.appended ELSE 0 END,
        error = COALESCE(:error, ns.error),
        started_at = CASE WHEN {_ENTERS_RUNNING} THEN :now ELSE ns.started_at END,
        completed_at = CASE
            WHEN {_ENTERS_RUNNING} THEN NULL
            WHEN {_NEW_NODE_STATUS} IN {TERMINAL_NODE_SQL} AND {_NEW_NODE_STATUS} <> ns.status
                THEN :now
            ELSE ns.completed_at END
    RETURNING {{{{node_columns}}}}"""
)

# An append writes the node state's counters and one row of workflow_node_messages
# (schema 5's trigger copies appended_message there as message number ``appended``):
# constant time, whatever the count. Concurrent appends all survive (the row lock
# orders them). The WHERE keeps the whole list within max_json_bytes (no row back,
# for a run that is there, means it would not fit). It returns the state with the
# appended message alone as its messages: reading the list back would be O(n).
APPEND_NODE_MESSAGE = _node_write(
    f"""
    INSERT INTO workflow_node_states AS ns
        (run_id, node_id, position, status, messages_json, updated_at, appended, appended_message,
         messages_bytes{{noted_column}})
    SELECT r.id, :node_id, {OUTSIDE_GRAPH_POSITION}, 'pending', '[]', :now, 1, :message,
           2 + :added_bytes{{noted_value}}{{run}}
    ON CONFLICT (run_id, node_id) DO UPDATE SET
        {{noted_update}}
        appended = ns.appended + 1,
        appended_message = :message,
        messages_bytes = ns.messages_bytes + :added_bytes,
        updated_at = :now
    WHERE ns.messages_bytes + :added_bytes <= :max_bytes
    RETURNING run_id, node_id, status, progress, :messages_json, started_at, completed_at, error""",
    may_write_nothing=True,
)

GET_NODE_STATE = _scoped_node_read(
    "SELECT {node_columns} FROM workflow_node_states AS ns "
    "WHERE ns.run_id = :run_id AND ns.node_id = :node_id{scope}",
    RUN_IN_PROJECT,
)
LIST_NODE_STATES = _scoped_node_read(
    "SELECT {node_columns} FROM workflow_node_states AS ns WHERE ns.run_id = :run_id{scope} "
    "ORDER BY ns.position, ns.node_id",
    RUN_IN_PROJECT,
)

# -- the run lifecycle (workflow_db.lifecycle) ---------------------------------------
# Each moves a run from the statuses it may leave, in one statement; no row
# back means the run is absent or in another status (the caller reads which).

CANCEL_RUN = Scoped.of(
    f"""
    UPDATE workflow_runs SET
        status = 'cancelled',
        finished_at = COALESCE(finished_at, :now),
        last_message = COALESCE(:last_message, last_message),
        paused_at = NULL, owner = NULL, lease_expires_at = NULL, lease_token = NULL,
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id = :id AND status IN ('pending', 'running', 'paused') AND {BOUNDED_LOCK_WAIT}{{scope}}
    RETURNING {RUN_COLUMNS}""",
    IN_PROJECT,
)
CANCEL_NODES = f"""
    UPDATE workflow_node_states SET status = 'cancelled', completed_at = :now, updated_at = :now
    WHERE run_id = :id AND status IN ('pending', 'running') AND {BOUNDED_LOCK_WAIT}"""

PAUSE_RUN = Scoped.of(
    f"""
    UPDATE workflow_runs SET
        status = 'paused',
        paused_at = :now,
        checkpoint_json = COALESCE(:checkpoint_json, checkpoint_json),
        last_message = COALESCE(:last_message, last_message),
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id = :id AND status = 'running' AND {BOUNDED_LOCK_WAIT}{FENCED}{{scope}}
    RETURNING {RUN_COLUMNS}""",
    IN_PROJECT,
)

RESUME_RUN = Scoped.of(
    f"""
    UPDATE workflow_runs SET
        status = 'running',
        paused_at = NULL,
        last_message = COALESCE(:last_message, last_message),
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id = :id AND status = 'paused' AND {BOUNDED_LOCK_WAIT}{FENCED}{{scope}}
    RETURNING {RUN_COLUMNS}""",
    IN_PROJECT,
)


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


# The run and its node states in one round trip: one row per node state (a
# run without any still gives one row, its node columns NULL), in node order.
RUN_SUMMARY = _scoped_node_read(
    f"""
    SELECT {_prefixed("r", RUN_COLUMNS)}, {{node_columns}}
    FROM workflow_runs AS r LEFT JOIN workflow_node_states AS ns ON ns.run_id = r.id
    WHERE r.id = :id{{scope}}
    ORDER BY ns.position, ns.node_id""",
    " AND r.project_id = :project_id",
)

# -- leases (workflow_db.leases) ------------------------------------------------------
# The database's clock on both sides of every comparison: wf_now() and
# wf_seconds_from_now(s) (schema 4 on PostgreSQL, the SQLite dialect's functions).

# A claim that does not find ``owner`` holding the run issues a new fencing token,
# greater than any the run had (lease_epoch counts them); a renewal keeps it.
_TAKE_LEASE = """
        lease_epoch = CASE WHEN owner = :owner THEN lease_epoch ELSE lease_epoch + 1 END,
        lease_token = CASE WHEN owner = :owner THEN lease_token ELSE lease_epoch + 1 END,
        owner = :owner,
        lease_expires_at = wf_seconds_from_now(:lease_seconds),
        updated_at = wf_strictly_after(updated_at, :now)"""

# Free, or expired, or already ours (a renewal); never a finished run.
CLAIM_RUN = Scoped.of(
    f"""
    UPDATE workflow_runs SET{_TAKE_LEASE}
    WHERE id = :id AND status NOT IN {TERMINAL_RUN_SQL}
      AND (owner IS NULL OR owner = :owner OR lease_expires_at < wf_now())
      AND {BOUNDED_LOCK_WAIT}{{scope}}
    RETURNING {RUN_COLUMNS}""",
    IN_PROJECT,
)

# The holder's renewal of many leases at once (each token kept). PostgreSQL locks the rows in
# id order, so two callers renewing overlapping sets never deadlock; a run taken over while
# its row lock was awaited is re-checked and left out.
_RENEW_RUNS = f"""
    UPDATE workflow_runs SET
        lease_expires_at = wf_seconds_from_now(:lease_seconds),
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id {{held}}
      AND owner = :owner AND status NOT IN {TERMINAL_RUN_SQL} AND {BOUNDED_LOCK_WAIT}{{scope}}
    RETURNING {RUN_COLUMNS}"""
_HELD_RUNS = DialectSQL(
    sqlite="IN (SELECT value FROM json_each(:ids))",
    # Arrays computed once (init plans): the runs asked for are looked up by key, in id order.
    postgresql="""= ANY (ARRAY(
        SELECT id FROM workflow_runs
        WHERE id = ANY (ARRAY(SELECT json_array_elements_text(:ids))) AND owner = :owner{scope}
        ORDER BY id FOR NO KEY UPDATE))""",
)
RENEW_RUNS = Scoped(
    *(
        DialectSQL(
            *(
                _RENEW_RUNS.format(held=getattr(_HELD_RUNS, dialect).format(scope=scope), scope=scope)
                for dialect in ("sqlite", "postgresql")
            )
        )
        for scope in ("", IN_PROJECT)
    )
)

RELEASE_RUN = Scoped.of(
    f"""
    UPDATE workflow_runs SET
        owner = NULL, lease_expires_at = NULL, lease_token = NULL,
        updated_at = wf_strictly_after(updated_at, :now)
    WHERE id = :id AND owner = :owner AND {BOUNDED_LOCK_WAIT}{{scope}}
    RETURNING {RUN_COLUMNS}""",
    IN_PROJECT,
)

# Finds and takes in one statement. The two kinds of free run are read from
# their own indexes, oldest first, each stopping at :limit (an OR of the two
# would read and sort every candidate: a crash leaves thousands). PostgreSQL
# skips rows another claimer has locked and re-checks a row that changed
# before it got the lock, so a run goes to exactly one caller; SQLite's
# writer holds the file for the statement.
_CLAIM_ORPHANED_RUNS = f"""
    UPDATE workflow_runs SET{_TAKE_LEASE}
    WHERE id IN (
        SELECT id FROM (
            SELECT id, since FROM (
                SELECT id, lease_expires_at AS since FROM workflow_runs
                WHERE status IN {{statuses}} AND owner IS NOT NULL AND lease_expires_at < wf_now(){{scope}}
                ORDER BY lease_expires_at LIMIT :limit{{lock}}) AS expired
            UNION ALL
            SELECT id, since FROM (
                SELECT id, started_at AS since FROM workflow_runs
                WHERE status IN {{statuses}} AND owner IS NULL
                  AND updated_at < wf_seconds_from_now(-:lease_seconds){{scope}}
                ORDER BY started_at LIMIT :limit{{lock}}) AS unowned
        ) AS free
        ORDER BY since LIMIT :limit)
      AND {BOUNDED_LOCK_WAIT}
    RETURNING {RUN_COLUMNS}"""


@functools.cache
def claim_orphaned_runs(statuses: tuple[str, ...], scoped: bool) -> DialectSQL:
    """The claim statement for these statuses (literals, for the partial indexes), built once."""
    literal = "(" + ", ".join(f"'{status}'" for status in statuses) + ")"
    scope = IN_PROJECT if scoped else ""

    def text(lock: str) -> str:
        return _CLAIM_ORPHANED_RUNS.format(statuses=literal, scope=scope, lock=lock)

    return DialectSQL(sqlite=text(""), postgresql=text(" FOR UPDATE SKIP LOCKED"))


# -- the change feed (workflow_db.feed) -------------------------------------------------
# workflow_changes holds each run's ('' as node_id) and node state's latest
# change (schema 6). PostgreSQL numbers pending changes (seq NULL) when the
# feed is read: one reader at a time (the advisory lock, held to its commit,
# in a statement of its own so the numbering's snapshot sees the previous
# reader's commit), and only rows it can see, i.e. of committed transactions;
# a row a writer holds is skipped and numbered after that writer commits.
# Numbers grow in the order changes became visible: a reader resuming after
# the last seq it saw misses none. SQLite numbers them as it writes.

CHANGE_SEQUENCER_LOCK = 7_302_318_815_146_031_104
"""The advisory lock key of the PostgreSQL change sequencer (the migration lock's differs)."""
SEQUENCE_BATCH = 10_000
LOCK_CHANGE_SEQUENCER = (
    f"SELECT pg_advisory_xact_lock({CHANGE_SEQUENCER_LOCK}) WHERE {BOUNDED_LOCK_WAIT}"
    " AND set_config('enable_bitmapscan', 'off', true) IS NOT NULL"
)
"""Take the sequencer's lock (held to the reader's commit), and read by plain index scans.

Every write marks its row pending with a new row version, so the seq index
holds an entry per write for NULL until VACUUM. A bitmap scan visits the heap
page of every one of them, each time (4.3 ms for one live pending row among
57,000 dead entries, measured); a plain index scan marks the dead ones as it
passes, and the next reader skips them (0.07 ms).
"""
SEQUENCE_CHANGES = f"""
    UPDATE workflow_changes SET seq = nextval('workflow_change_seq')
    WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM workflow_changes WHERE seq IS NULL
        ORDER BY seq LIMIT {SEQUENCE_BATCH} FOR UPDATE SKIP LOCKED))"""
"""Number pending changes, at most SEQUENCE_BATCH (the rest next time).

Read from the seq index's NULLs and updated by ctid whatever the statistics
say: planned on statistics taken while most rows were pending, a join took
20-40 ms a read on 100k rows instead of 1.
"""
CHANGE_HEAD = "SELECT coalesce(max(seq), 0) FROM workflow_changes"
"""The newest numbered change: every change numbered later has a larger seq."""

_LIST_CHANGES = DialectSQL(
    sqlite=f"""
    SELECT c.seq, c.project_id, c.run_id, c.node_id, {_prefixed("r", RUN_COLUMNS)}, {{node_columns}}
    FROM workflow_changes AS c
    LEFT JOIN workflow_runs AS r ON c.node_id = '' AND r.id = c.run_id
    LEFT JOIN workflow_node_states AS ns
        ON c.node_id <> '' AND ns.run_id = c.run_id AND ns.node_id = c.node_id
    WHERE c.seq > :after{{filters}}
    ORDER BY c.seq LIMIT :limit""",
    # The page first, then one lookup per change of the run or the node state it
    # names (LIMIT 1 keeps each a per-row lookup: a generic plan, which cannot
    # know :limit, would otherwise hash-join whole tables).
    postgresql=f"""
    SELECT c.seq, c.project_id, c.run_id, c.node_id, {_prefixed("r", RUN_COLUMNS)}, {{node_columns}}
    FROM (
        SELECT seq, project_id, run_id, node_id FROM workflow_changes AS c
        WHERE seq > :after{{filters}} ORDER BY seq LIMIT :limit) AS c
    LEFT JOIN LATERAL (
        SELECT * FROM workflow_runs AS r WHERE c.node_id = '' AND r.id = c.run_id LIMIT 1) AS r ON TRUE
    LEFT JOIN LATERAL (
        SELECT * FROM workflow_node_states AS ns
        WHERE c.node_id <> '' AND ns.run_id = c.run_id AND ns.node_id = c.node_id LIMIT 1) AS ns ON TRUE
    ORDER BY c.seq""",
)
"""A page of the feed. The run's and node state's columns follow the change's four (seq,
project_id, run_id, node_id); the other object's are NULL. A change row goes with its
run (ON DELETE CASCADE, in the deleting transaction), so the object is always there."""


@functools.cache
def list_changes(by_project: bool, by_run: bool) -> DialectSQL:
    """The feed's page for the filters given (project, run), built once each."""
    filters = (" AND c.project_id = :project_id" if by_project else "") + (
        " AND c.run_id = :run_id" if by_run else ""
    )
    return DialectSQL(
        *(
            getattr(_LIST_CHANGES, dialect)
            .format(filters=filters, node_columns="{node_columns}")
            .replace("{node_columns}", _node_columns(dialect))
            for dialect in ("sqlite", "postgresql")
        )
    )


# -- the importer's bulk statements (run with executemany) ------------------------

IMPORT_PROJECT = """
    INSERT INTO projects (id, name, created_at) VALUES (:id, :id, :now)
    ON CONFLICT (id) DO NOTHING"""

IMPORT_GRAPH = """
    INSERT INTO workflow_graphs
        (id, project_id, name, description, graph_json, version, created_at, updated_at)
    VALUES (:id, :project_id, :name, :description, :graph_json, 1, :created_at, :updated_at)"""

_RUN_VALUES = """
        project_id = :project_id, workflow_id = :workflow_id,
        workflow_version = (SELECT version FROM workflow_graphs WHERE id = :workflow_id),
        status = :status, input_json = :input_json, output_json = :output_json,
        started_at = :started_at, finished_at = :finished_at, last_message = :last_message,
        updated_at = :updated_at"""
OVERWRITE_RUN = f"UPDATE workflow_runs SET {_RUN_VALUES} WHERE id = :id"

# Bulk inserts from one JSON array parameter (:rows), one statement per chunk:
# much cheaper than a statement per row. Keys that are absent read as NULL;
# timestamps are fixed-width ISO-8601 UTC text, which both databases read.
IMPORT_RUNS = DialectSQL(
    sqlite=f"""
        INSERT INTO workflow_runs ({_RUN_STORED_AT_START})
        SELECT r.value ->> '$.id', r.value ->> '$.project_id', g.id, g.version,
               r.value ->> '$.status', r.value -> '$.input', r.value -> '$.output',
               r.value ->> '$.started_at', r.value ->> '$.finished_at',
               r.value ->> '$.last_message', r.value ->> '$.updated_at'
        FROM json_each(:rows) AS r JOIN workflow_graphs AS g ON g.id = r.value ->> '$.workflow_id'""",
    postgresql=f"""
        INSERT INTO workflow_runs ({_RUN_STORED_AT_START})
        SELECT r.id, r.project_id, g.id, g.version, r.status, r.input, r.output,
               r.started_at, r.finished_at, r.last_message, r.updated_at
        FROM json_to_recordset(:rows) AS r (
                 id text, project_id text, workflow_id text, status text, input json, output json,
                 started_at timestamptz, finished_at timestamptz, last_message text,
                 updated_at timestamptz)
             JOIN workflow_graphs AS g ON g.id = r.workflow_id""",
)

# Over the PENDING state the run's trigger made, or a state stored before.
_IMPORT_NODE_STATES_CONFLICT = """
    ON CONFLICT (run_id, node_id) DO UPDATE SET
        status = excluded.status, progress = excluded.progress,
        messages_json = excluded.messages_json, messages_bytes = excluded.messages_bytes, appended = 0,
        started_at = excluded.started_at, completed_at = excluded.completed_at, error = excluded.error"""
IMPORT_NODE_STATES = DialectSQL(
    sqlite=f"""
        INSERT INTO workflow_node_states AS ns
            (run_id, node_id, position, status, progress, messages_json, started_at, completed_at, error,
             messages_bytes)
        SELECT r.value ->> '$.run_id', r.value ->> '$.node_id', {OUTSIDE_GRAPH_POSITION},
               r.value ->> '$.status', r.value ->> '$.progress', r.value -> '$.messages',
               r.value ->> '$.started_at', r.value ->> '$.completed_at', r.value ->> '$.error',
               length(CAST(r.value -> '$.messages' AS BLOB))
        FROM json_each(:rows) AS r
        WHERE true{_IMPORT_NODE_STATES_CONFLICT}""",
    postgresql=f"""
        INSERT INTO workflow_node_states AS ns
            (run_id, node_id, position, status, progress, messages_json, started_at, completed_at, error,
             messages_bytes)
        SELECT r.run_id, r.node_id, {OUTSIDE_GRAPH_POSITION}, r.status, r.progress, r.messages,
               r.started_at, r.completed_at, r.error, octet_length(r.messages::text)
        FROM json_to_recordset(:rows) AS r (
                 run_id text, node_id text, status text, progress double precision, messages json,
                 started_at timestamptz, completed_at timestamptz, error text)
        {_IMPORT_NODE_STATES_CONFLICT}""",
)

STORED_GRAPHS = f"SELECT {GRAPH_COLUMNS} FROM workflow_graphs WHERE id IN ({{ids}})"
STORED_RUNS = f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id IN ({{ids}})"
STORED_NODE_STATES = _with_node_columns(
    "SELECT {node_columns} FROM workflow_node_states AS ns WHERE ns.run_id IN ({ids})"
)

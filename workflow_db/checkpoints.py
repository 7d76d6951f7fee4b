"""What both LangGraph checkpoint savers share: their SQL, and turning calls into statements and rows
into checkpoints, without any I/O.

:class:`~workflow_db.checkpoint_saver_async.AsyncWorkflowCheckpointSaver` runs
these statements on an ``AsyncDatabase``; ``checkpoint_saver.py`` (the
synchronous saver) is generated from it. Tables: schema 10
(``sql/*/0010_langgraph_checkpoints.sql``).

A checkpoint is one row of ``langgraph_checkpoints``: its JSON without the
channel values, except those a JSON number, string, boolean or null holds
exactly (kept inline, as langgraph-checkpoint-postgres does); every other
value is a row of ``langgraph_blobs`` keyed by (channel, version), written
once and shared by the later checkpoints of the thread that keep that
version. Reading a checkpoint, or a page of them, is one statement that
returns the checkpoints, the blobs they name and their pending writes.
"""

from __future__ import annotations

import functools
import json
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from .calls import DEFAULT_MAX_JSON_BYTES, check_lease_token, lost_lease
from .dialects.base import SQL, Dialect, DialectSQL, Row
from .errors import IntegrityError, ValidationError, WorkflowDBError
from .models import JsonCodec, check_key, check_text
from .queries import BOUNDED_LOCK_WAIT, Scoped

Guard = tuple[SQL, dict[str, Any]] | None
"""The check a write makes first (see :meth:`CheckpointSaverCore._guard`)."""

PAGE_SIZE = 100
"""Checkpoints read per statement by ``list`` without a ``limit`` (keyset pages)."""

PRUNE_STRATEGIES = ("keep_latest", "delete")

_DIALECT_PARTS = {
    # the (channel, version) pairs a checkpoint row names, as rows of (key, value)
    "versions": (
        "json_each(c.checkpoint, '$.channel_versions') AS v",
        "jsonb_each_text(c.checkpoint -> 'channel_versions') AS v",
    ),
    # the blob of each wanted (channel, version) n
    "blob": (
        "JOIN langgraph_blobs AS b ON b.thread_id = n.thread_id AND b.checkpoint_ns = n.checkpoint_ns"
        " AND b.channel = n.channel AND b.version = n.version",
        "CROSS JOIN LATERAL (SELECT * FROM langgraph_blobs AS b WHERE b.thread_id = n.thread_id"
        " AND b.checkpoint_ns = n.checkpoint_ns AND b.channel = n.channel AND b.version = n.version"
        " LIMIT 1) AS b",
    ),
    # a parameter of a VALUES list as bytes (a column of NULLs only would be text on PostgreSQL)
    "bytes": ("v.column4", "CAST(v.column4 AS bytea)"),
    # a JSON column as text
    "checkpoint_text": ("c.checkpoint", "c.checkpoint::text"),
    "metadata_text": ("c.metadata", "c.metadata::text"),
    # the strings of a JSON array parameter, as rows of one column
    "ids": ("SELECT value FROM json_each(:ids)", "SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))"),
    # a key LangGraph writes into the metadata of threads that use a DeltaChannel
    "delta": (
        "json_extract(c.metadata, '$.counters_since_delta_snapshot') IS NOT NULL",
        "c.metadata -> 'counters_since_delta_snapshot' IS NOT NULL",
    ),
}


def _both(template: str) -> DialectSQL:
    """``template`` with the :data:`_DIALECT_PARTS` of each dialect in place of their ``{name}``."""
    texts = [template, template]
    for name, parts in _DIALECT_PARTS.items():
        texts = [text.replace(f"{{{name}}}", part) for text, part in zip(texts, parts, strict=True)]
    return DialectSQL(sqlite=texts[0], postgresql=texts[1])


VISIBLE = (
    " AND EXISTS (SELECT 1 FROM workflow_runs AS r"
    " WHERE r.id = c.workflow_run_id AND r.project_id = :project_id)"
)
"""A saver scoped to a project sees the rows ``c`` of that project's runs only."""


def _scoped(template: str) -> Scoped[DialectSQL]:
    """``template`` (``{scope}`` where :data:`VISIBLE` goes) for any project and for one."""
    return Scoped(_both(template.replace("{scope}", "")), _both(template.replace("{scope}", VISIBLE)))


RUN_OF_THREAD = "(SELECT r.id FROM workflow_runs AS r WHERE r.id = :thread_id)"
"""The run a thread is, if it is one: what ``workflow_run_id`` holds."""

_THREAD_HELD = f"""SELECT 1 FROM workflow_runs WHERE id = :thread_id
    AND (project_id = :project_id OR :project_id IS NULL)
    AND (lease_token = :lease_token OR :lease_token IS NULL) AND {BOUNDED_LOCK_WAIT}"""
THREAD_IN_PROJECT = DialectSQL(
    sqlite=_THREAD_HELD,
    # The run cannot be deleted before the rows that name it commit.
    postgresql=f"{_THREAD_HELD} FOR KEY SHARE",
)
"""A scoped saver's write: ``:thread_id`` is a run of ``:project_id``."""
THREAD_HELD = DialectSQL(
    sqlite=_THREAD_HELD,
    # Nor can another replica claim it: a claim waits until this write committed, and fences it out after.
    postgresql=f"{_THREAD_HELD} FOR SHARE",
)
"""A fenced write (``lease_token`` in the config): the run is still held under that token."""

UPSERT_CHECKPOINT = f"""
    INSERT INTO langgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id,
                                       workflow_run_id, langgraph_run_id, checkpoint, metadata)
    SELECT :thread_id, :checkpoint_ns, :checkpoint_id, :parent_checkpoint_id,
           {RUN_OF_THREAD}, :langgraph_run_id, :checkpoint, :metadata
    WHERE {BOUNDED_LOCK_WAIT}
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE
    SET checkpoint = excluded.checkpoint, metadata = excluded.metadata,
        langgraph_run_id = excluded.langgraph_run_id"""

ROWS_PER_STATEMENT = 500
"""Blobs or writes inserted by one statement (a VALUES list)."""


def _values(columns: tuple[str, ...], count: int) -> str:
    """``(VALUES (:a_0, :b_0), (:a_1, :b_1), ...) AS v``: ``count`` rows of parameters."""
    rows = ", ".join("(" + ", ".join(f":{column}_{i}" for column in columns) + ")" for i in range(count))
    return f"(VALUES {rows}) AS v"


BLOB_COLUMNS = ("channel", "version", "type", "blob")


@functools.lru_cache(maxsize=64)
def insert_blobs(count: int) -> DialectSQL:
    """Insert ``count`` blobs of one thread (``:channel_0``, ``:version_0``... each)."""
    return _both(f"""
    INSERT INTO langgraph_blobs (thread_id, checkpoint_ns, channel, version, workflow_run_id, type, blob)
    SELECT :thread_id, :checkpoint_ns, v.column1, v.column2, {RUN_OF_THREAD}, v.column3, {{bytes}}
    FROM {_values(BLOB_COLUMNS, count)}
    WHERE {BOUNDED_LOCK_WAIT}
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING""")


WRITE_COLUMNS = ("idx", "channel", "type", "blob")


@functools.lru_cache(maxsize=64)
def insert_writes(count: int, *, replace: bool) -> DialectSQL:
    """Insert ``count`` writes of one task (``:idx_0``, ``:channel_0``... each); ``replace``: the writes
    of LangGraph's special channels (errors, interrupts...), where the last one stands."""
    conflict = "UPDATE SET channel = excluded.channel, type = excluded.type, blob = excluded.blob"
    conflict = conflict if replace else "NOTHING"
    return _both(f"""
    INSERT INTO langgraph_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, workflow_run_id,
                                  channel, task_path, type, blob)
    SELECT :thread_id, :checkpoint_ns, :checkpoint_id, :task_id, v.column1, {RUN_OF_THREAD},
           v.column2, :task_path, v.column3, {{bytes}}
    FROM {_values(WRITE_COLUMNS, count)}
    WHERE {BOUNDED_LOCK_WAIT}
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO {conflict}""")


@functools.lru_cache(maxsize=64)
def upsert_checkpoint_with_blobs(count: int) -> str:
    """:data:`UPSERT_CHECKPOINT` and :func:`insert_blobs` in one statement (where ``writes_in_with``)."""
    return f"WITH blobs AS ({insert_blobs(count).postgresql}) {UPSERT_CHECKPOINT}"


def rows_statements(
    statement: Callable[[int], DialectSQL],
    common: dict[str, Any],
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
) -> list[tuple[SQL, dict[str, Any]]]:
    """The statements that insert ``rows`` (values of ``columns``), :data:`ROWS_PER_STATEMENT` at a time."""
    statements: list[tuple[SQL, dict[str, Any]]] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        params = dict(common)
        for index, row in enumerate(chunk):
            params.update((f"{column}_{index}", value) for column, value in zip(columns, row, strict=True))
        statements.append((statement(len(chunk)), params))
    return statements


# One statement reads checkpoints (kind 0), the blobs they name (1) and their pending writes (2).
# Blobs come first: PostgreSQL types each column from the first branch that is not NULL in it. Each
# blob is one primary-key lookup (on PostgreSQL a LATERAL ... LIMIT 1, so that the planner, which
# guesses 100 channels a checkpoint, does not hash the whole table instead).
_READ = """
    WITH page AS ({page}),
    wanted AS (SELECT DISTINCT c.thread_id, c.checkpoint_ns, v.key AS channel,
                      CAST(v.value AS TEXT) AS version
               FROM page AS c, {versions})
    SELECT 1, b.thread_id, b.checkpoint_ns, NULL, b.channel, b.version, b.type, NULL, b.blob, NULL
    FROM wanted AS n {blob}
    UNION ALL
    SELECT 2, w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.channel, w.type, w.task_path,
           w.blob, w.idx
    FROM langgraph_writes AS w JOIN page AS p
    ON w.thread_id = p.thread_id AND w.checkpoint_ns = p.checkpoint_ns AND w.checkpoint_id = p.checkpoint_id
    UNION ALL
    SELECT 0, c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, {checkpoint_text},
           {metadata_text}, NULL, NULL, NULL
    FROM page AS c"""
_PAGE_COLUMNS = (
    "SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.checkpoint, c.metadata"
)
_ONE = "FROM langgraph_checkpoints AS c WHERE c.thread_id = :thread_id AND c.checkpoint_ns = :checkpoint_ns"

GET_CHECKPOINT = _scoped(
    _READ.replace("{page}", f"{_PAGE_COLUMNS} {_ONE} AND c.checkpoint_id = :checkpoint_id{{scope}}")
)
GET_LATEST_CHECKPOINT = _scoped(
    _READ.replace("{page}", f"{_PAGE_COLUMNS} {_ONE}{{scope}} ORDER BY c.checkpoint_id DESC LIMIT 1")
)

_THREADS = "c.thread_id IN ({ids})"


DELETE_THREADS = tuple(
    _scoped(f"DELETE FROM {table} AS c WHERE {_THREADS}{{scope}} AND {BOUNDED_LOCK_WAIT}")
    for table in ("langgraph_writes", "langgraph_blobs", "langgraph_checkpoints")
)
"""Every row of the threads ``:ids`` (a JSON array)."""

_OF_RUNS = "c.langgraph_run_id IN ({ids})"
DELETE_FOR_RUNS = (
    _scoped(
        f"""DELETE FROM langgraph_writes AS w WHERE EXISTS (
            SELECT 1 FROM langgraph_checkpoints AS c WHERE {_OF_RUNS} AND c.thread_id = w.thread_id
            AND c.checkpoint_ns = w.checkpoint_ns AND c.checkpoint_id = w.checkpoint_id{{scope}})
        AND {BOUNDED_LOCK_WAIT}"""
    ),
    _scoped(f"DELETE FROM langgraph_checkpoints AS c WHERE {_OF_RUNS}{{scope}} AND {BOUNDED_LOCK_WAIT}"),
)
"""The checkpoints LangGraph wrote in the runs ``:ids`` (its own run ids, a JSON array), and their writes."""

_NEWER = """EXISTS (SELECT 1 FROM langgraph_checkpoints AS n WHERE n.thread_id = c.thread_id
    AND n.checkpoint_ns = c.checkpoint_ns AND n.checkpoint_id > c.checkpoint_id)"""
_KEPT_BLOBS = """SELECT c.thread_id, c.checkpoint_ns, v.key, CAST(v.value AS TEXT)
    FROM langgraph_checkpoints AS c, {versions} WHERE c.thread_id IN ({ids})"""
USES_DELTA_CHANNELS = _scoped(
    f"SELECT c.thread_id FROM langgraph_checkpoints AS c WHERE {_THREADS} AND {{delta}}{{scope}} LIMIT 1"
)
KEEP_LATEST = (
    *(
        _scoped(f"DELETE FROM {table} AS c WHERE {_THREADS} AND {_NEWER}{{scope}} AND {BOUNDED_LOCK_WAIT}")
        for table in ("langgraph_writes", "langgraph_checkpoints")
    ),
    _scoped(
        f"""DELETE FROM langgraph_blobs AS c WHERE {_THREADS}{{scope}} AND {BOUNDED_LOCK_WAIT}
        AND (c.thread_id, c.checkpoint_ns, c.channel, c.version) NOT IN ({_KEPT_BLOBS})"""
    ),
)
"""Per (thread, namespace): every checkpoint but the newest, the writes on them, the blobs none left names."""

_COPY_CONDITION = f"c.thread_id = :source_thread_id AND {BOUNDED_LOCK_WAIT}{{scope}}"
COPY_THREAD = tuple(
    _scoped(
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT "
        + ", ".join(
            ":thread_id"
            if name == "thread_id"
            else RUN_OF_THREAD
            if name == "workflow_run_id"
            else f"c.{name}"
            for name in columns
        )
        + f" FROM {table} AS c WHERE {_COPY_CONDITION} ON CONFLICT DO NOTHING"
    )
    for table, columns in (
        (
            "langgraph_checkpoints",
            (
                "thread_id",
                "checkpoint_ns",
                "checkpoint_id",
                "parent_checkpoint_id",
                "workflow_run_id",
                "langgraph_run_id",
                "checkpoint",
                "metadata",
            ),
        ),
        (
            "langgraph_blobs",
            ("thread_id", "checkpoint_ns", "channel", "version", "workflow_run_id", "type", "blob"),
        ),
        (
            "langgraph_writes",
            (
                "thread_id",
                "checkpoint_ns",
                "checkpoint_id",
                "task_id",
                "idx",
                "workflow_run_id",
                "channel",
                "task_path",
                "type",
                "blob",
            ),
        ),
    )
)
"""Every row of ``:source_thread_id`` copied to ``:thread_id`` (rows it already has stay)."""


@functools.lru_cache(maxsize=256)
def list_statement(
    *, thread: bool, namespace: bool, checkpoint: bool, before: bool, filters: int, after: bool
) -> Scoped[DialectSQL]:
    """The statement of one page of ``list``: what the call filters on decides its conditions."""
    conditions = [
        condition
        for condition, given in (
            ("c.thread_id = :thread_id", thread),
            ("c.checkpoint_ns = :checkpoint_ns", namespace),
            ("c.checkpoint_id = :checkpoint_id", checkpoint),
            ("c.checkpoint_id < :before", before),
            (
                "(c.checkpoint_id, c.thread_id, c.checkpoint_ns) < (:after_id, :after_thread, :after_ns)",
                after,
            ),
        )
        if given
    ]
    page = f"{_PAGE_COLUMNS} FROM langgraph_checkpoints AS c WHERE TRUE"
    page += "".join(f" AND {condition}" for condition in conditions) + "{filters}{scope}"
    page += " ORDER BY c.checkpoint_id DESC, c.thread_id DESC, c.checkpoint_ns DESC LIMIT :page_size"
    sqlite_filters = "".join(
        f" AND json_extract(c.metadata, :filter_path_{i}) IS json_extract(:filter_value_{i}, '$')"
        for i in range(filters)
    )
    pg_filters = " AND c.metadata @> CAST(:filter AS jsonb)" if filters else ""
    statements = []
    for scope in ("", VISIBLE):
        both = _both(_READ.replace("{page}", page.replace("{scope}", scope)))
        statements.append(
            DialectSQL(
                sqlite=both.sqlite.replace("{filters}", sqlite_filters),
                postgresql=both.postgresql.replace("{filters}", pg_filters),
            )
        )
    return Scoped(statements[0], statements[1])


@dataclass
class ListQuery:
    """One ``list`` call: its statement, parameters and where the next page starts."""

    statement: Scoped[DialectSQL]
    next_statement: Scoped[DialectSQL]
    params: dict[str, Any]
    limit: int | None
    returned: int = 0
    after: tuple[str, str, str] | None = None
    size: int = PAGE_SIZE

    def page(self, project_id: str | None) -> tuple[SQL, dict[str, Any]]:
        """The statement and parameters of the next page."""
        params = dict(self.params)
        self.size = PAGE_SIZE if self.limit is None else min(PAGE_SIZE, self.limit - self.returned)
        params["page_size"] = self.size
        if self.after is None:
            return self.statement.pick(project_id), params
        params["after_id"], params["after_thread"], params["after_ns"] = self.after
        return self.next_statement.pick(project_id), params

    def advance(self, page: Sequence[CheckpointTuple]) -> bool:
        """Note a page read; whether another one may follow."""
        self.returned += len(page)
        if len(page) < self.size or (self.limit is not None and self.returned >= self.limit):
            return False
        configurable = page[-1].config["configurable"]
        self.after = (configurable["checkpoint_id"], configurable["thread_id"], configurable["checkpoint_ns"])
        return True


def thread_key(value: object, field_name: str = "thread_id") -> str:
    """A thread id as stored: text (an int or a UUID as its string), checked like every id."""
    if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        value = str(value)
    return check_key(field_name, value)


def _text(field_name: str, value: object) -> str:
    """Text a database can store (a namespace, a task path)."""
    text = check_text(field_name, value)
    assert text is not None
    return text


def _inline(value: object) -> bool:
    """Whether a channel value round-trips through JSON as itself (then it stays in the checkpoint)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63 and type(value) is int
    if isinstance(value, float):
        return math.isfinite(value) and type(value) is float
    if isinstance(value, str) and type(value) is str:
        return "\x00" not in value and (value.isascii() or _encodable(value))
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _version_text(version: object) -> str:
    """A channel version as the blob table keys it (what ``CAST(json value AS TEXT)`` gives)."""
    return version if isinstance(version, str) else json.dumps(version)


def id_array(values: Iterable[object], field_name: str) -> str:
    """A JSON array of checked ids, for an ``IN ({ids})`` parameter."""
    if isinstance(values, str | bytes):
        raise ValidationError(f"{field_name}: expected a sequence of ids, not one string")
    return json.dumps([thread_key(value, field_name) for value in values])


class CheckpointSaverCore(BaseCheckpointSaver[str]):
    """The savers' shared part: configuration, checks, statements and decoding."""

    def __init__(
        self, db: Dialect, *, project_id: str | None = None, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(serde=serde)
        self.db = db
        self.project_id = None if project_id is None else check_key("project_id", project_id)
        self._json = JsonCodec(DEFAULT_MAX_JSON_BYTES)

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The version after ``current``: a zero-padded counter and a random tie-breaker, so versions
        sort as text (the blob table keys values by version)."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- writing --------------------------------------------------------------------------

    def _guard(self, config: RunnableConfig, thread_id: str) -> Guard:
        """The check a write of ``thread_id`` makes first, in its transaction: it is a run of the saver's
        project, and still held under the config's ``lease_token`` if one is given (None: no check)."""
        lease_token = check_lease_token(config["configurable"].get("lease_token"))
        if self.project_id is None and lease_token is None:
            return None
        params = {"thread_id": thread_id, "project_id": self.project_id, "lease_token": lease_token}
        return (THREAD_IN_PROJECT if lease_token is None else THREAD_HELD), params

    def _refused(self, guard: Mapping[str, Any]) -> WorkflowDBError:
        """The error of a write whose guard found no run."""
        thread_id, lease_token = guard["thread_id"], guard["lease_token"]
        if self.project_id is None:
            return lost_lease(thread_id, lease_token)
        return IntegrityError(
            f"thread_id {thread_id!r}: not a run of project {self.project_id!r}"
            + ("" if lease_token is None else f" held under lease {lease_token}")
            + "; this saver writes only the threads of that project's runs"
        )

    def _put_statements(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[Guard, RunnableConfig, list[tuple[SQL, dict[str, Any]]]]:
        """The guard, the config ``put`` returns and the statements that store the checkpoint."""
        configurable = config["configurable"]
        thread_id = thread_key(configurable.get("thread_id"))
        checkpoint_ns = _text("checkpoint_ns", configurable.get("checkpoint_ns", ""))
        checkpoint_id = check_key("checkpoint.id", checkpoint["id"])
        values = checkpoint["channel_values"]
        stored = {key: value for key, value in checkpoint.items() if key != "channel_values"}
        stored["channel_values"] = {key: value for key, value in values.items() if _inline(value)}
        serializable = get_serializable_checkpoint_metadata(config, metadata)
        run_id = serializable.get("run_id")
        row = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
        blobs = []
        for channel, version in new_versions.items():
            value = values.get(channel, _MISSING)
            if value is not _MISSING and _inline(value):
                continue
            kind, blob = ("empty", None) if value is _MISSING else self.serde.dumps_typed(value)
            blobs.append((channel, _version_text(version), kind, blob))
        checkpoint_params = row | {
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": configurable.get("checkpoint_id"),
            "langgraph_run_id": None if run_id is None else str(run_id),
            "checkpoint": self.db.encode_json(self._json.encode("checkpoint", stored)),
            "metadata": self.db.encode_json(self._json.encode("metadata", serializable)),
        }
        statements = rows_statements(insert_blobs, row, BLOB_COLUMNS, blobs)
        if len(statements) == 1 and self.db.writes_in_with:  # one statement: no transaction around two
            statements = [(upsert_checkpoint_with_blobs(len(blobs)), statements[0][1] | checkpoint_params)]
        else:
            statements.append((UPSERT_CHECKPOINT, checkpoint_params))
        return self._guard(config, thread_id), _config(thread_id, checkpoint_ns, checkpoint_id), statements

    def _writes_statements(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> tuple[Guard, list[tuple[SQL, dict[str, Any]]]]:
        """The guard and the statements of ``put_writes``."""
        configurable = config["configurable"]
        thread_id = thread_key(configurable.get("thread_id"))
        row = {
            "thread_id": thread_id,
            "checkpoint_ns": _text("checkpoint_ns", configurable.get("checkpoint_ns", "")),
            "checkpoint_id": check_key("checkpoint_id", configurable.get("checkpoint_id")),
            "task_id": check_key("task_id", task_id),
            "task_path": _text("task_path", task_path),
        }
        statement = functools.partial(
            insert_writes, replace=all(channel in WRITES_IDX_MAP for channel, _ in writes)
        )
        rows = [
            (WRITES_IDX_MAP.get(channel, index), channel, *self.serde.dumps_typed(value))
            for index, (channel, value) in enumerate(writes)
        ]
        statements = rows_statements(statement, row, WRITE_COLUMNS, rows)
        return self._guard(config, thread_id), statements

    def _prune_statements(
        self, thread_ids: Sequence[str], strategy: str
    ) -> tuple[dict[str, Any], tuple[Scoped[DialectSQL], ...]]:
        """The parameters and statements of ``prune``."""
        if strategy not in PRUNE_STRATEGIES:
            raise ValidationError(f"strategy: {strategy!r} is not one of {', '.join(PRUNE_STRATEGIES)}")
        params = self._params(ids=self.db.encode_json(id_array(thread_ids, "thread_ids")))
        return params, (DELETE_THREADS if strategy == "delete" else KEEP_LATEST)

    def _params(self, **params: Any) -> dict[str, Any]:
        """``params`` with the saver's project."""
        params["project_id"] = self.project_id
        return params

    # -- reading --------------------------------------------------------------------------

    def _get_statement(self, config: RunnableConfig) -> tuple[SQL, dict[str, Any]]:
        """The statement and parameters of ``get_tuple``."""
        configurable = config["configurable"]
        params = self._params(
            thread_id=thread_key(configurable.get("thread_id")),
            checkpoint_ns=_text("checkpoint_ns", configurable.get("checkpoint_ns", "")),
        )
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is None:
            return GET_LATEST_CHECKPOINT.pick(self.project_id), params
        params["checkpoint_id"] = check_key("checkpoint_id", checkpoint_id)
        return GET_CHECKPOINT.pick(self.project_id), params

    def _list_query(
        self,
        config: RunnableConfig | None,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> ListQuery:
        """What ``list`` reads, page by page."""
        params = self._params()
        configurable = (config or {}).get("configurable", {})
        thread = config is not None and configurable.get("thread_id") is not None
        if thread:
            params["thread_id"] = thread_key(configurable["thread_id"])
        namespace = thread and configurable.get("checkpoint_ns") is not None
        if namespace:
            params["checkpoint_ns"] = _text("checkpoint_ns", configurable["checkpoint_ns"])
        checkpoint_id = get_checkpoint_id(config) if thread and config is not None else None
        if checkpoint_id:
            params["checkpoint_id"] = check_key("checkpoint_id", checkpoint_id)
        before_id = get_checkpoint_id(before) if before is not None else None
        if before_id is not None:
            params["before"] = check_key("before", before_id)
        filters = dict(filter or {})
        if filters:
            params["filter"] = self.db.encode_json(self._json.encode("filter", filters))
            for index, (key, value) in enumerate(filters.items()):
                params[f"filter_path_{index}"] = '$."' + check_key("filter", key).replace('"', '\\"') + '"'
                params[f"filter_value_{index}"] = self._json.encode(f"filter[{key!r}]", value)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValidationError(f"limit: expected a non-negative integer or None, got {limit!r}")
        shape = {
            "thread": thread,
            "namespace": namespace,
            "checkpoint": bool(checkpoint_id),
            "before": before_id is not None,
            "filters": len(filters),
        }
        return ListQuery(
            list_statement(**shape, after=False), list_statement(**shape, after=True), params, limit
        )

    def _tuples(self, rows: Iterable[Row]) -> list[CheckpointTuple]:
        """The checkpoints of one read statement's rows, newest first, with their values and writes."""
        checkpoints: list[Row] = []
        blobs: dict[tuple[str, str, str, str], tuple[str, bytes | None]] = {}
        writes: dict[tuple[str, str, str], list[Row]] = {}
        for row in rows:
            kind = row[0]
            if kind == 0:
                checkpoints.append(row)
            elif kind == 1:
                blobs[row[1], row[2], row[4], row[5]] = (row[6], row[8])
            else:
                writes.setdefault((row[1], row[2], row[3]), []).append(row)
        checkpoints.sort(key=lambda row: (row[3], row[1], row[2]), reverse=True)
        return [self._tuple(row, blobs, writes.get((row[1], row[2], row[3]), [])) for row in checkpoints]

    def _tuple(
        self,
        row: Row,
        blobs: Mapping[tuple[str, str, str, str], tuple[str, bytes | None]],
        writes: list[Row],
    ) -> CheckpointTuple:
        _, thread_id, checkpoint_ns, checkpoint_id, parent_id, checkpoint_text, metadata_text = row[:7]
        checkpoint = cast(Checkpoint, json.loads(checkpoint_text))
        values = checkpoint.setdefault("channel_values", {})
        for channel, version in checkpoint["channel_versions"].items():
            blob = blobs.get((thread_id, checkpoint_ns, channel, _version_text(version)))
            if blob is not None and blob[0] != "empty" and blob[1] is not None:
                values[channel] = self.serde.loads_typed((blob[0], blob[1]))
        writes.sort(key=lambda write: writes_sort_key(write[7], write[4], write[9]))
        return CheckpointTuple(
            config=_config(thread_id, checkpoint_ns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=cast(CheckpointMetadata, json.loads(metadata_text)),
            parent_config=None if parent_id is None else _config(thread_id, checkpoint_ns, parent_id),
            pending_writes=[
                (write[4], write[5], self.serde.loads_typed((write[6], write[8]))) for write in writes
            ],
        )


_MISSING = object()


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }

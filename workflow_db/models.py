"""Status enums, the frozen records the store returns, and input validation."""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Generic, TypeVar, cast

from .errors import ValidationError


class WorkflowRunStatus(StrEnum):
    """Status of a workflow run; COMPLETED, FAILED and CANCELLED are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowNodeStatus(StrEnum):
    """Status of one node within a run; COMPLETED, FAILED, SKIPPED and CANCELLED are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


TERMINAL_RUN_STATUSES = frozenset(
    {WorkflowRunStatus.COMPLETED, WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED}
)
TERMINAL_NODE_STATUSES = frozenset(
    {
        WorkflowNodeStatus.COMPLETED,
        WorkflowNodeStatus.FAILED,
        WorkflowNodeStatus.SKIPPED,
        WorkflowNodeStatus.CANCELLED,
    }
)

STATUS_ALIASES: dict[type[StrEnum], dict[str, StrEnum]] = {
    WorkflowRunStatus: {},
    WorkflowNodeStatus: {"idle": WorkflowNodeStatus.PENDING},
}
"""Values of the legacy service's enums that differ from ours: its node status ``idle`` is PENDING."""


Record = TypeVar("Record")
Row = tuple[Any, ...]


def record_builder(cls: type[Record]) -> Callable[..., Record]:
    """Return a function building ``cls`` from positional field values.

    It fills the instance dictionary directly: the store builds records from
    rows it has already checked, and a frozen dataclass's ``__init__`` costs
    about three times as much.
    """
    names = tuple(field.name for field in fields(cls))  # type: ignore[arg-type]
    new = object.__new__

    def build(*values: Any) -> Record:
        record = new(cls)
        record.__dict__.update(zip(names, values, strict=True))
        return record

    return build


class LazyFields:
    """Mixin for records whose fields are decoded from the stored row on first read.

    Listing thousands of runs is dominated by decoding JSON and timestamps the
    caller may never read. A record built by :class:`LazyRecords` holds only
    the row in a slot; the first read of any field decodes the whole row (with
    the decoder registered for the record's class) into the instance's
    ``__dict__``, where every later read finds it at plain attribute speed.
    The dataclass's ``__eq__``, ``__repr__`` and ``__hash__`` read fields like
    any caller, so a lazy record equals an eager one with the same values.
    Records built by ``__init__`` hold their fields from the start.
    """

    # The stored row until the first read; a slot, so a fresh record is one
    # allocation (its __dict__ appears only when the fields are decoded).
    __slots__ = ("_row",)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle and copy the decoded fields, never the stored row."""
        return {field.name: getattr(self, field.name) for field in fields(self)}  # type: ignore[arg-type]


class _DecodeOnRead:
    """Class attribute standing in for one field of a lazy record.

    A non-data descriptor: Python looks in the instance's ``__dict__`` first,
    so it runs only on a record's first read, before the fields are there
    (no AttributeError raised and caught, as ``__getattr__`` would need).
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, record: LazyFields | None, owner: type) -> Any:
        if record is None:
            return self
        values = record.__dict__
        row = _row_of(record)
        if row is not None:
            values.update(zip(_field_names(owner), _DECODERS[owner](row), strict=True))
            _set_row(record, None)
        try:
            return values[self.name]  # also when another thread decoded the row just now
        except KeyError:
            raise AttributeError(f"{owner.__name__!r} object has no attribute {self.name!r}") from None


LazyRecord = TypeVar("LazyRecord", bound=LazyFields)


def decoded_on_read(cls: type[LazyRecord]) -> type[LazyRecord]:
    """Class decorator, above ``@dataclass``: the fields of ``cls`` are decoded on first read."""
    for name in _field_names(cls):
        setattr(cls, name, _DecodeOnRead(name))
    return cls


Decoder = Callable[[Row], Iterable[Any]]
_DECODERS: dict[type, Decoder] = {}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_set_row = LazyFields._row.__set__  # type: ignore[attr-defined]


def _row_of(record: LazyFields) -> Row | None:
    try:
        return LazyFields._row.__get__(record)  # type: ignore[attr-defined, no-any-return]
    except AttributeError:  # never set: a record built by its __init__
        return None


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in fields(cls))
    return names


class LazyRecords(Generic[LazyRecord]):
    """Builds :class:`LazyFields` records of one class from stored rows.

    ``decode(row)`` returns the field values in order; it is the one decoder
    of ``cls`` (a record finds it by its class on first read). :meth:`many`
    builds a whole list without a Python call per row: two ``map`` passes run
    in C, half the cost of a comprehension calling :meth:`one`.
    """

    def __init__(self, cls: type[LazyRecord], decode: Decoder) -> None:
        if not isinstance(vars(cls).get(_field_names(cls)[0]), _DecodeOnRead):
            raise TypeError(f"{cls.__name__} is not decorated with @decoded_on_read")
        if _DECODERS.setdefault(cls, decode) is not decode:
            raise TypeError(f"{cls.__name__} already has a row decoder")
        self._cls = cls

    def one(self, row: Row) -> LazyRecord:
        """The record of one row."""
        record: LazyRecord = object.__new__(self._cls)
        _set_row(record, row)
        return record

    def many(self, rows: Sequence[Row]) -> list[LazyRecord]:
        """The records of ``rows``, in order."""
        records: list[LazyRecord] = list(map(object.__new__, itertools.repeat(self._cls, len(rows))))
        collections.deque(map(_set_row, records, rows), maxlen=0)  # consume: sets every row
        return records


@dataclass(frozen=True)
class Project:
    """A project: the scope every graph and run belongs to."""

    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class WorkflowGraph:
    """A workflow graph; ``graph`` is the JSON object stored in ``graph_json``."""

    project_id: str
    name: str
    graph: Any
    description: str | None = None
    id: str = ""
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


@decoded_on_read
@dataclass(frozen=True)
class WorkflowRun(LazyFields):
    """One run of a workflow, pinned to the graph version it started with.

    ``paused_at`` and ``checkpoint`` are set by ``pause_run``; ``owner``,
    ``lease_expires_at`` and ``lease_token`` while a service process holds the
    run: ``lease_token`` is the fencing token its claim issued (pass it as
    ``lease_token=`` to the writes made on behalf of that claim).
    """

    id: str
    project_id: str
    workflow_id: str
    workflow_version: int
    status: WorkflowRunStatus
    input: Any
    output: Any
    started_at: datetime
    finished_at: datetime | None
    last_message: str | None
    updated_at: datetime
    paused_at: datetime | None = None
    checkpoint: Any = None
    owner: str | None = None
    lease_expires_at: datetime | None = None
    lease_token: int | None = None


@decoded_on_read
@dataclass(frozen=True)
class WorkflowNodeState(LazyFields):
    """The state of one node within one run."""

    run_id: str
    node_id: str
    status: WorkflowNodeStatus
    progress: float
    messages: list[str]
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None


# -- identifiers and time ---------------------------------------------------


def new_id() -> str:
    """A time-ordered (UUIDv7 layout) identifier as 32 hex digits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> 68) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    return f"{value:032x}"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def utc_text(value: datetime) -> str:
    """A UTC datetime as fixed-width ISO-8601 text (always 6 fractional digits, ``+00:00``).

    How SQLite stores timestamps (text order is time order), and text
    PostgreSQL reads as ``timestamptz``.
    """
    return value.isoformat(timespec="microseconds")


def _psycopg_time(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


TIME_DECODERS: dict[type, Callable[[Any], datetime]] = {str: datetime.fromisoformat, datetime: _psycopg_time}
"""How a stored timestamp of each Python type becomes an aware UTC datetime.

SQLite returns the text :func:`utc_text` wrote; psycopg returns an aware
datetime in the session's time zone. Chosen by the value's type, not by the
database, so a row decodes without knowing where it came from.
"""


def stored_time(value: str | datetime) -> datetime:
    """A timestamp as a database returns it, as an aware UTC datetime (see :data:`TIME_DECODERS`)."""
    return TIME_DECODERS[type(value)](value)


# -- validation ---------------------------------------------------------------

StatusEnum = TypeVar("StatusEnum", WorkflowRunStatus, WorkflowNodeStatus)


def _status_lookup(kind: type[StrEnum]) -> dict[str, StrEnum]:
    table: dict[str, StrEnum] = {member.value: member for member in kind}
    table.update(STATUS_ALIASES[kind])
    return table


_STATUS_LOOKUP: dict[type, dict[str, Any]] = {
    WorkflowRunStatus: _status_lookup(WorkflowRunStatus),
    WorkflowNodeStatus: _status_lookup(WorkflowNodeStatus),
}


def to_status(kind: type[StatusEnum], value: object, field: str = "status") -> StatusEnum:
    """Return ``value`` as a member of ``kind``.

    ``value`` is a member, a string, or a member of any ``str`` enum (the
    service's own) whose value is a known status or alias (``idle``).
    """
    if type(value) is kind:
        return value
    key = value.value if isinstance(value, Enum) else value
    member = _STATUS_LOOKUP[kind].get(key) if isinstance(key, str) else None
    if member is None:
        allowed = ", ".join(member.value for member in kind)
        aliases = "".join(f" ({alias} = {target.value})" for alias, target in STATUS_ALIASES[kind].items())
        raise ValidationError(f"{field}: {value!r} is not one of {allowed}{aliases}")
    return cast(StatusEnum, member)


def to_statuses(kind: type[StatusEnum], value: object, field: str = "status") -> tuple[StatusEnum, ...]:
    """Return one status or a collection of statuses as a tuple of members."""
    if isinstance(value, str):
        return (to_status(kind, value, field),)
    if not isinstance(value, Iterable):
        return (to_status(kind, value, field),)
    statuses = tuple(dict.fromkeys(to_status(kind, item, field) for item in value))
    if not statuses:
        raise ValidationError(f"{field}: an empty collection matches nothing; pass None for any")
    return statuses


MAX_ID_LENGTH = 255
"""The longest id of any kind (project, graph, run, node, owner), in characters, on both databases.

PostgreSQL's B-tree holds at most about 2,700 bytes per index entry, and the
node-state key holds two ids of up to four UTF-8 bytes a character.
"""

MAX_JSON_DEPTH = 128
"""How deeply a JSON value may nest (arrays and objects), on both databases."""

MAX_INTEGER = 2**63 - 1
"""The largest integer a database column or LIMIT holds (a signed 64-bit integer)."""

MAX_VERSION = 2**31 - 1
"""The largest graph version (a 32-bit column)."""


def check_text(field: str, value: object, *, optional: bool = False) -> str | None:
    """Check that ``value`` is text a database can hold (no NUL, valid Unicode)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{field}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(f"{field}: the NUL character (\\x00) cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{field}: not valid Unicode (lone surrogate)") from None
    return value


def check_key(field: str, value: object) -> str:
    """Check an id used to look something up (cheap: hot paths call it).

    A string of at most :data:`MAX_ID_LENGTH` characters, valid Unicode, without NUL.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{field}: expected a string id, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{field}: {len(value)} characters; an id has at most {MAX_ID_LENGTH}")
    if not value.isascii():
        check_text(field, value)  # a lone surrogate cannot be encoded
    if "\x00" in value:
        raise ValidationError(f"{field}: the NUL character (\\x00) cannot be stored")
    return value


def id_params(value: object, field: str, project_id: str | None, key: str = "id") -> dict[str, Any]:
    """The parameters of a by-id statement: ``{key: id, "project_id": scope}``, both checked."""
    return {
        key: check_key(field, value),
        "project_id": None if project_id is None else check_key("project_id", project_id),
    }


def check_id(field: str, value: object) -> str:
    """Check an identifier to store: non-empty text of at most :data:`MAX_ID_LENGTH` characters."""
    text = check_key(field, value)
    if not text:
        raise ValidationError(f"{field}: must not be empty")
    return text


def shown(value: object) -> str:
    """``repr(value)`` for an error message, at most 80 characters (an int of 10,000 digits has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an {type(value).__name__} too large to show"
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def check_progress(value: object) -> float:
    """Check that ``value`` is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"progress: expected a number in [0, 1], got {shown(value)}")
    if isinstance(value, int) and not 0 <= value <= 1:  # float() of 10**400 would overflow
        raise ValidationError(f"progress: {shown(value)} is outside [0, 1]")
    progress = float(value)
    if math.isnan(progress) or not 0.0 <= progress <= 1.0:
        raise ValidationError(f"progress: {shown(value)} is outside [0, 1]")
    return progress


def check_aware(field: str, value: object) -> datetime:
    """Check that ``value`` is a timezone-aware datetime and return it in UTC."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{field}: expected a timezone-aware datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{field}: naive datetime {value!r}; give it a timezone")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{field}: {value.isoformat()} is out of range: in UTC it must lie within years 1-9999"
        ) from None


def check_limit(value: object) -> int | None:
    """Check a page size: None (no limit) or a positive integer."""
    return None if value is None else check_count("limit", value)


def check_flag(field: str, value: object) -> bool:
    """Check that ``value`` is True or False (a string such as "no" would read as true)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{field}: expected True or False, got {value!r}")
    return value


def check_count(field: str, value: object, maximum: int = MAX_INTEGER) -> int:
    """Check that ``value`` is a positive integer no larger than ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(f"{field}: expected an integer from 1 to {maximum}, got {shown(value)}")
    return value


def check_messages(value: object) -> list[str]:
    """Check that ``value`` is a list (or tuple) of strings."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValidationError(f"messages: expected a list of strings, got {type(value).__name__}")
    return [str(check_text(f"messages[{index}]", item)) for index, item in enumerate(value)]


def check_graph(value: object) -> dict[str, Any]:
    """Check a graph structure (a dict, or JSON text of one) and return it as a dict.

    It must be an object whose ``nodes`` is a list of objects with unique
    string ``id`` values; ``edges``, if present, is a list of
    ``{"source": id, "target": id}`` naming existing nodes.
    """
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValidationError(f"graph: not valid JSON ({exc})") from None
        except RecursionError:
            raise _too_deep("graph") from None
    if not isinstance(value, dict):
        raise ValidationError(f"graph: expected a JSON object, got {type(value).__name__}")
    nodes = value.get("nodes")
    if not isinstance(nodes, list):
        raise ValidationError('graph: "nodes" must be a list of objects with a string "id"')
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or not node["id"]:
            raise ValidationError(f'graph: nodes[{index}] must be an object with a non-empty string "id"')
        check_key(f"graph.nodes[{index}].id", node["id"])  # ids are limited wherever they enter
        if node["id"] in seen:
            raise ValidationError(f"graph: node id {node['id']!r} appears more than once")
        seen.add(node["id"])
    edges = value.get("edges", [])
    if not isinstance(edges, list):
        raise ValidationError('graph: "edges" must be a list of {"source": id, "target": id}')
    for index, edge in enumerate(edges):
        if not isinstance(edge, dict):
            raise ValidationError(f'graph: edges[{index}] must be {{"source": id, "target": id}}')
        for end in ("source", "target"):
            if edge.get(end) not in seen:
                raise ValidationError(
                    f"graph: edges[{index}].{end} {edge.get(end)!r} names no node of the graph"
                )
    return value


class JsonCodec:
    """Serialises JSON values for storage, with a size cap on every value."""

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValidationError(f"max_json_bytes: expected a positive integer, got {max_bytes!r}")
        self.max_bytes = max_bytes

    def encode(self, field: str, value: object) -> str:
        """Return ``value`` as compact JSON text, or raise ValidationError naming ``field``."""
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"{field}: not JSON-serialisable ({exc})") from None
        except RecursionError:
            raise _too_deep(field) from None
        # Nesting needs a bracket per level: most values have too few to be worth a walk.
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _nesting(value) > MAX_JSON_DEPTH:
            raise _too_deep(field)
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError(f"{field}: contains a lone surrogate, not valid Unicode") from None
        if size > self.max_bytes:
            raise ValidationError(
                f"{field}: {size} bytes once serialised; max_json_bytes is {self.max_bytes}"
            )
        if "\\u0000" in text and _holds_nul(value):
            raise ValidationError(f"{field}: the NUL character (\\u0000) cannot be stored")
        return text

    def encode_optional(self, field: str, value: object) -> str | None:
        """Like :meth:`encode`, but ``None`` stays ``None`` (SQL NULL)."""
        return None if value is None else self.encode(field, value)


def _too_deep(field: str) -> ValidationError:
    return ValidationError(f"{field}: nested more than {MAX_JSON_DEPTH} levels deep (arrays and objects)")


def _nesting(value: object) -> int:
    """How many arrays and objects deep ``value`` nests (walked without recursion)."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    return False

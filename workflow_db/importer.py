"""Move the old in-memory service's graphs, runs and node states into the database.

    from workflow_db.importer import import_memory
    report = import_memory(store, graphs=service.graphs, runs=service.runs,
                           node_states=service.node_states)

All of it is written in one transaction, or none of it. Running it again
changes nothing; an id already stored with other values in the fields an item
supplies is a ConflictError unless ``overwrite=True``. Writes are bulk
statements (``executemany``), not a call per row.

Command line (exit 0 success, 1 failure, 2 usage error)::

    python -m workflow_db.importer [--url URL] [--dry-run] snapshot.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from . import cli
from . import queries as q
from .dialects import Database, DialectSQL, Session
from .dialects.base import SQL
from .errors import (
    ConflictError,
    IntegrityError,
    ValidationError,
)
from .items import fields_of, plain
from .models import (
    MAX_JSON_DEPTH,
    TERMINAL_RUN_STATUSES,
    JsonCodec,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRunStatus,
    check_graph,
    check_id,
    check_messages,
    check_progress,
    check_text,
    to_status,
    utc_now,
    utc_text,
)
from .rows import graph_from_row, node_state_from_row, run_from_row
from .store import WorkflowStore

logger = logging.getLogger(__name__)

_MISSING = object()
_CHUNK = 500
"""Ids per ``IN (...)`` list when reading what is stored."""
_BATCH = 1000
"""Items checked, compared and written at a time: the import holds one batch besides its input."""
_PROGRESS_EVERY = 20_000
"""Items between two progress lines."""
T = TypeVar("T")
GRAPH_FIELDS = ("project_id", "name", "description", "graph", "created_at", "updated_at")
RUN_FIELDS = (
    "project_id", "workflow_id", "status", "input", "output",
    "started_at", "finished_at", "last_message", "updated_at",
)  # fmt: skip
NODE_FIELDS = ("status", "progress", "messages", "started_at", "completed_at", "error")
_GRAPH_PAYLOAD = ("id", *GRAPH_FIELDS, "nodes", "edges")
_RUN_PAYLOAD = ("id", *RUN_FIELDS)
_STATE_PAYLOAD = ("run_id", "node_id", *NODE_FIELDS)


@dataclass(frozen=True)
class ImportReport:
    """How many graphs, runs and node states were written and skipped (already stored alike)."""

    graphs_written: int
    graphs_skipped: int
    runs_written: int
    runs_skipped: int
    node_states_written: int
    node_states_skipped: int
    dry_run: bool = False

    def summary(self) -> str:
        """One line for logs and the command line."""
        verb = "would write" if self.dry_run else "wrote"
        return (
            f"{verb} {self.graphs_written} graphs, {self.runs_written} runs, "
            f"{self.node_states_written} node states; skipped {self.graphs_skipped} graphs, "
            f"{self.runs_skipped} runs, {self.node_states_skipped} node states already stored"
        )


class _DryRun(Exception):
    """Raised inside the import transaction to roll it back after a dry run."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__("dry run")
        self.report = report


def import_memory(
    store: WorkflowStore,
    graphs: Mapping[str, Any] | None = None,
    runs: Mapping[str, Any] | None = None,
    node_states: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    default_project_id: str = "default",
    overwrite: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Import the three dictionaries of the old in-memory WorkflowService.

    ``graphs``: graph id -> graph-like; ``runs``: run id -> run-like;
    ``node_states``: run id -> node id -> state-like. An item is any object
    with the fields of WorkflowGraph / WorkflowRun / WorkflowNodeState as
    attributes or mapping keys. A graph without ``project_id`` goes to
    ``default_project_id``, a run without one to its graph's; missing projects
    are created. Naive datetimes are taken as UTC; absent ones are set to now.
    ``dry_run=True`` checks everything and reports, then rolls back.
    """
    started = time.perf_counter()
    codec = JsonCodec(store.max_json_bytes)
    now = utc_now()
    default_project = check_id("default_project_id", default_project_id)
    logger.info(
        "importing %d graphs, %d runs and the node states of %d runs%s",
        len(graphs or {}), len(runs or {}), len(node_states or {}),
        " (dry run: checked, then rolled back)" if dry_run else "",
    )  # fmt: skip
    writer = _Writer(
        store,
        codec,
        overwrite=overwrite,
        dry_run=dry_run,
        graph=lambda key, item: _graph(key, item, codec, now, default_project),
        run=lambda key, item: _run(key, item, codec, now),
        node_state=lambda run_id, node_id, item: _node_state(run_id, node_id, item, codec),
    )
    try:
        with store.db.writing() as session:
            report = writer.write(session, graphs or {}, runs or {}, node_states or {})
            if dry_run:
                raise _DryRun(report)
    except _DryRun as rolled_back:
        report = rolled_back.report
    logger.info("%s in %.2f s", "checked" if dry_run else "imported", time.perf_counter() - started)
    return report


# -- reading items of any shape ----------------------------------------------------


def _get(item: dict[str, Any], name: str) -> Any:
    return item.get(name, _MISSING)


def _supplied(item: dict[str, Any], name: str) -> bool:
    return item.get(name) is not None


def _time(field: str, value: Any, default: datetime | None) -> datetime | None:
    if value is _MISSING or value is None:
        return default
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(f"{field}: {value!r} is not an ISO-8601 timestamp") from None
    if not isinstance(value, datetime):
        raise ValidationError(f"{field}: expected a datetime or ISO-8601 text, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _own_id(key: Any, item: Any, field: str = "id") -> str:
    checked = check_id("key", key)
    own = _get(item, field)
    if own not in (_MISSING, None) and own != checked:
        raise ValidationError(f"{field}: {own!r} differs from its key {checked!r}")
    return checked


def _normalise_all(
    items: Iterable[tuple[str, Any]], label: str, normalise: Callable[[str, Any], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    result = {}
    for key, item in items:
        with _naming_the_item(f"{label}[{key!r}]"):
            result[key] = normalise(key, item)
    return result


def _chunks(items: Iterable[T], size: int = _BATCH) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@contextmanager
def _naming_the_item(label: str) -> Iterator[None]:
    """A ValidationError raised inside names the item; so does a value nested too deep to read."""
    try:
        yield
    except ValidationError as exc:
        raise ValidationError(f"{label}: {exc}") from None
    except RecursionError:
        raise ValidationError(f"{label}: nested more than {MAX_JSON_DEPTH} levels deep") from None


def _graph(key: str, given: Any, codec: JsonCodec, now: datetime, default_project: str) -> dict[str, Any]:
    item = fields_of(given, _GRAPH_PAYLOAD)
    structure = check_graph(_graph_structure(item))
    project = _get(item, "project_id")
    created_at = _time("created_at", _get(item, "created_at"), now)
    return {
        "id": _own_id(key, item),
        "project_id": check_id("project_id", project) if project not in (_MISSING, None) else default_project,
        "name": check_text("name", _get(item, "name")),
        "description": check_text("description", _or_none(_get(item, "description")), optional=True),
        "graph": structure,
        "graph_json": codec.encode("graph", structure),
        "created_at": created_at,
        "updated_at": _time("updated_at", _get(item, "updated_at"), created_at),
        "supplied": {name for name in GRAPH_FIELDS if _supplied(item, name)} | {"graph"},
    }


def _graph_structure(item: dict[str, Any]) -> Any:
    """Its ``graph`` field, else the service's lists as ``{"nodes": [...], "edges": [...]}``."""
    structure = _get(item, "graph")
    if structure not in (_MISSING, None) or _get(item, "nodes") is _MISSING:
        return plain(structure)
    lists = {"nodes": _get(item, "nodes"), "edges": _get(item, "edges")}
    return {key: plain(value) for key, value in lists.items() if value not in (_MISSING, None)}


def _run(key: str, given: Any, codec: JsonCodec, now: datetime) -> dict[str, Any]:
    item = fields_of(given, _RUN_PAYLOAD)
    status = _get(item, "status")
    run_status = (
        WorkflowRunStatus.PENDING if status in (_MISSING, None) else to_status(WorkflowRunStatus, status)
    )
    project = _get(item, "project_id")
    started_at = _time("started_at", _get(item, "started_at"), now)
    finished_default = now if run_status in TERMINAL_RUN_STATUSES else None
    run_input, output = plain(_or_none(_get(item, "input"))), plain(_or_none(_get(item, "output")))
    return {
        "id": _own_id(key, item),
        "project_id": check_id("project_id", project) if project not in (_MISSING, None) else None,
        "workflow_id": check_id("workflow_id", _get(item, "workflow_id")),
        "status": run_status,
        "input": run_input,
        "input_json": codec.encode_optional("input", run_input),
        "output": output,
        "output_json": codec.encode_optional("output", output),
        "started_at": started_at,
        "finished_at": _time("finished_at", _get(item, "finished_at"), finished_default),
        "last_message": check_text("last_message", _or_none(_get(item, "last_message")), optional=True),
        "updated_at": _time("updated_at", _get(item, "updated_at"), now),
        "supplied": {name for name in RUN_FIELDS if _supplied(item, name)},
    }


def _node_state(run_id: str, node_id: str, given: Any, codec: JsonCodec) -> dict[str, Any]:
    item = fields_of(given, _STATE_PAYLOAD)
    if _get(item, "run_id") not in (_MISSING, None, run_id):
        raise ValidationError(f"run_id: {_get(item, 'run_id')!r} differs from its key {run_id!r}")
    status = _get(item, "status")
    progress = _get(item, "progress")
    messages = _get(item, "messages")
    checked_messages = [] if messages in (_MISSING, None) else check_messages(messages)
    return {
        "run_id": check_id("run_id", run_id),
        "node_id": _own_id(node_id, item, "node_id"),
        "status": (
            WorkflowNodeStatus.PENDING
            if status in (_MISSING, None)
            else to_status(WorkflowNodeStatus, status)
        ),
        "progress": 0.0 if progress in (_MISSING, None) else check_progress(progress),
        "messages": checked_messages,
        "messages_json": codec.encode("messages", checked_messages),
        "started_at": _time("started_at", _get(item, "started_at"), None),
        "completed_at": _time("completed_at", _get(item, "completed_at"), None),
        "error": check_text("error", _or_none(_get(item, "error")), optional=True),
        "supplied": {name for name in NODE_FIELDS if _supplied(item, name)},
    }


def _or_none(value: Any) -> Any:
    return None if value is _MISSING else value


# -- writing ---------------------------------------------------------------------------


class _Writer:
    """Checks the import batch by batch, compares it with what is stored and writes the difference.

    Graphs go first, all at once (a service has a few); runs and node states
    follow in batches of :data:`_BATCH`, so that the import never holds a
    second copy of its input (all inside the caller's one transaction).
    """

    def __init__(
        self,
        store: WorkflowStore,
        codec: JsonCodec,
        *,
        overwrite: bool,
        dry_run: bool,
        graph: Callable[[str, Any], dict[str, Any]],
        run: Callable[[str, Any], dict[str, Any]],
        node_state: Callable[[str, str, Any], dict[str, Any]],
    ) -> None:
        self.store = store
        self.db = store.db
        self.codec = codec
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.written = "would be written (dry run)" if dry_run else "written"
        self.graph, self.run, self.node_state = graph, run, node_state

    def write(
        self,
        session: Session,
        given_graphs: Mapping[str, Any],
        runs: Mapping[str, Any],
        node_states: Mapping[str, Mapping[str, Any]],
    ) -> ImportReport:
        """Write what is new or (with overwrite) changed; return the counts."""
        graphs = _normalise_all(given_graphs.items(), "graphs", self.graph)
        stored_graphs = {g.id: g for g in self._stored(session, q.STORED_GRAPHS, graphs, graph_from_row)}
        # A run's project is its graph's (checked below): the graphs name every project there is.
        projects = {g["project_id"] for g in graphs.values()}
        graph_projects = {gid: g.project_id for gid, g in stored_graphs.items()}
        graph_projects.update({gid: g["project_id"] for gid, g in graphs.items()})
        now = self.db.encode_time(utc_now())
        session.many(q.IMPORT_PROJECT, [{"id": project, "now": now} for project in sorted(projects)])

        new_graphs, changed_graphs = self._split(graphs, stored_graphs, "graphs", GRAPH_FIELDS)
        session.many(q.IMPORT_GRAPH, [self._graph_params(g) for g in new_graphs])
        for graph in changed_graphs:
            self.store.update_graph(graph["id"], name=graph["name"], description=graph["description"],
                                    graph=graph["graph"])  # fmt: skip
        logger.info("graphs: %d new, %d overwritten: %s", len(new_graphs), len(changed_graphs), self.written)
        runs_written = self._write_runs(session, runs, graph_projects)
        states_seen, states_written = self._write_node_states(session, node_states, runs)
        return ImportReport(
            graphs_written=len(new_graphs) + len(changed_graphs),
            graphs_skipped=len(graphs) - len(new_graphs) - len(changed_graphs),
            runs_written=runs_written,
            runs_skipped=len(runs) - runs_written,
            node_states_written=states_written,
            node_states_skipped=states_seen - states_written,
            dry_run=self.dry_run,
        )

    def _write_runs(
        self, session: Session, runs: Mapping[str, Any], graph_projects: Mapping[str, str]
    ) -> int:
        written = done = 0
        for batch in _chunks(runs.items()):
            normalised = _normalise_all(batch, "runs", self.run)
            for run_id, run in normalised.items():
                self._place_run(run_id, run, graph_projects)
            stored = {r.id: r for r in self._stored(session, q.STORED_RUNS, normalised, run_from_row)}
            new_runs, changed_runs = self._split(normalised, stored, "runs", RUN_FIELDS)
            if new_runs:
                session.run(q.IMPORT_RUNS, self._json_rows(new_runs, _RUN_PAYLOAD))
            session.many(q.OVERWRITE_RUN, [self._run_params(r) for r in changed_runs])
            written += len(new_runs) + len(changed_runs)
            done += len(batch)
            if done % _PROGRESS_EVERY < len(batch) or done == len(runs):
                logger.info("runs: %d of %d checked, %d %s", done, len(runs), written, self.written)
        return written

    def _write_node_states(
        self, session: Session, node_states: Mapping[str, Mapping[str, Any]], runs: Mapping[str, Any]
    ) -> tuple[int, int]:
        """Node states batch by batch; returns how many were given and how many written."""
        seen = written = 0
        given = (
            (run_id, node_id, item)
            for run_id, states in node_states.items()
            for node_id, item in states.items()
        )
        for batch in _chunks(given):
            states = {}
            for run_id, node_id, item in batch:
                with _naming_the_item(f"node_states[{run_id!r}][{node_id!r}]"):
                    states[(run_id, node_id)] = self.node_state(run_id, node_id, item)
            run_ids = {run_id for run_id, _ in states}
            not_imported = {run_id for run_id in run_ids if run_id not in runs}
            stored_runs = {r.id for r in self._stored(session, q.STORED_RUNS, not_imported, run_from_row)}
            for run_id, node_id in states:
                if run_id not in runs and run_id not in stored_runs:
                    raise IntegrityError(
                        f"node_states[{run_id!r}][{node_id!r}]: run_id names no run in the import "
                        "or the database"
                    )
            stored_states = {
                (s.run_id, s.node_id): s
                for s in self._stored(session, q.STORED_NODE_STATES, run_ids, node_state_from_row)
            }
            # As create_run made it: the import's state simply replaces it.
            untouched = {key for key, state in stored_states.items() if _untouched(state)}
            new_states, changed_states = self._split(
                states, stored_states, "node_states", NODE_FIELDS, replaceable=untouched
            )
            if new_states or changed_states:
                session.run(
                    q.IMPORT_NODE_STATES, self._json_rows(new_states + changed_states, _STATE_PAYLOAD)
                )
            seen += len(states)
            written += len(new_states) + len(changed_states)
            if seen % _PROGRESS_EVERY < len(batch):
                logger.info("node states: %d checked, %d %s", seen, written, self.written)
        logger.info("node states: %d checked, %d %s", seen, written, self.written)
        return seen, written

    @staticmethod
    def _place_run(run_id: str, run: dict[str, Any], graph_projects: Mapping[str, str]) -> None:
        graph_project = graph_projects.get(run["workflow_id"])
        if graph_project is None:
            raise IntegrityError(
                f"runs[{run_id!r}]: workflow_id {run['workflow_id']!r} names no graph in the import "
                "or the database"
            )
        if run["project_id"] is None:
            run["project_id"] = graph_project
        elif run["project_id"] != graph_project:
            raise ValidationError(
                f"runs[{run_id!r}]: project_id {run['project_id']!r} differs from the project "
                f"{graph_project!r} of workflow {run['workflow_id']!r}"
            )

    def _stored(
        self, session: Session, sql: SQL, ids: Iterable[str], decode: Callable[[Any], Any]
    ) -> list[Any]:
        keys = sorted(ids)
        records = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            names = [f"id_{index}" for index in range(len(chunk))]
            template = getattr(sql, session.database.dialect) if isinstance(sql, DialectSQL) else sql
            text = template.format(ids=", ".join(f":{name}" for name in names))
            records += [decode(row) for row in session.all(text, dict(zip(names, chunk, strict=True)))]
        return records

    def _split(
        self,
        items: Mapping[Any, dict[str, Any]],
        stored: Mapping[Any, Any],
        label: str,
        fields: Sequence[str],
        replaceable: Collection[Any] = (),
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """New items, and stored ones that differ, merged over what is stored.

        A stored item that differs in a supplied field is a ConflictError
        unless overwriting or its key is ``replaceable``; fields the item does
        not supply keep their stored value.
        """
        new, changed = [], []
        for key, item in items.items():
            current = stored.get(key)
            if current is None:
                new.append(item)
                continue
            different = [
                name for name in fields if name in item["supplied"] and item[name] != getattr(current, name)
            ]
            if different and not self.overwrite and key not in replaceable:
                raise ConflictError(
                    f"{label}[{_label(key)}] is already stored with other values in {', '.join(different)}; "
                    "pass overwrite=True (--overwrite on the command line) to replace it"
                )
            if different:
                changed.append(self._merged(item, current, fields))
        return new, changed

    def _merged(self, item: dict[str, Any], current: Any, fields: Sequence[str]) -> dict[str, Any]:
        merged = dict(item)
        for name in fields:
            if name not in item["supplied"]:
                merged[name] = getattr(current, name)
                if f"{name}_json" in merged:
                    merged[f"{name}_json"] = self.codec.encode_optional(name, merged[name])
        return merged

    def _time(self, value: datetime | None) -> Any:
        return None if value is None else self.db.encode_time(value)

    def _graph_params(self, graph: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": graph["id"],
            "project_id": graph["project_id"],
            "name": graph["name"],
            "description": graph["description"],
            "graph_json": self.db.encode_json(graph["graph_json"]),
            "created_at": self._time(graph["created_at"]),
            "updated_at": self._time(graph["updated_at"]),
        }

    def _run_params(self, run: dict[str, Any]) -> dict[str, Any]:
        encode_json = self.db.encode_json
        return {
            "id": run["id"],
            "project_id": run["project_id"],
            "workflow_id": run["workflow_id"],
            "status": run["status"].value,
            "input_json": None if run["input_json"] is None else encode_json(run["input_json"]),
            "output_json": None if run["output_json"] is None else encode_json(run["output_json"]),
            "started_at": self._time(run["started_at"]),
            "finished_at": self._time(run["finished_at"]),
            "last_message": run["last_message"],
            "updated_at": self._time(run["updated_at"]),
        }

    def _json_rows(self, items: list[dict[str, Any]], fields: Sequence[str]) -> dict[str, Any]:
        """``{"rows": <JSON array>}`` for a bulk statement: enums as values, times as UTC text."""
        rows = []
        for item in items:
            row = {}
            for name in fields:
                value = item[name]
                if value is None:
                    continue  # absent keys read as NULL
                if isinstance(value, datetime):
                    value = utc_text(value)
                row[name] = value
            rows.append(row)
        return {"rows": self.db.encode_json(json.dumps(rows, ensure_ascii=False, separators=(",", ":")))}


def _label(key: Any) -> str:
    """``'id'`` for graphs and runs, ``'run'][' node'`` for node states."""
    return "][".join(map(repr, key)) if isinstance(key, tuple) else repr(key)


def _untouched(state: WorkflowNodeState) -> bool:
    """A state as create_run made it, that nobody changed since."""
    return (
        state.status is WorkflowNodeStatus.PENDING
        and state.progress == 0.0
        and not state.messages
        and state.started_at is None
        and state.completed_at is None
        and state.error is None
    )


# -- command line ------------------------------------------------------------------------


def load_snapshot(path: str) -> dict[str, Any]:
    """Read a snapshot file: ``{"graphs": {...}, "runs": {...}, "node_states": {...}}``."""
    try:
        with open(path, encoding="utf-8") as file:
            logger.info("reading %s (%.1f MB)", path, os.fstat(file.fileno()).st_size / 1e6)
            snapshot = json.load(file)
    except OSError as exc:
        raise ValidationError(f"snapshot {path!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValidationError(f"snapshot {path!r}: not valid JSON ({exc})") from None
    if not isinstance(snapshot, dict):
        raise ValidationError(f"snapshot {path!r}: expected a JSON object with graphs, runs, node_states")
    unknown = set(snapshot) - {"graphs", "runs", "node_states"}
    if unknown:
        raise ValidationError(
            f"snapshot {path!r}: unknown key(s) {sorted(unknown)}; expected graphs, runs, node_states"
        )
    for key in ("graphs", "runs", "node_states"):
        if not isinstance(snapshot.get(key, {}), dict):
            raise ValidationError(f"snapshot {path!r}: {key} must be an object keyed by id")
    return snapshot


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 1 failure, 2 usage error)."""
    parser = cli.parser_for(
        "python -m workflow_db.importer",
        "Import a JSON snapshot of the in-memory WorkflowService into the (migrated) database.",
    )
    parser.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    parser.add_argument("--overwrite", action="store_true", help="replace stored items that differ")
    parser.add_argument("--default-project", default="default", help="project of graphs that name none")
    parser.add_argument("snapshot", help="the JSON file: {graphs: {...}, runs: {...}, node_states: {...}}")
    return cli.run(parser, argv, _import_snapshot)


def _import_snapshot(db: Database, args: argparse.Namespace) -> int:
    snapshot = load_snapshot(args.snapshot)
    report = import_memory(
        WorkflowStore(db),
        snapshot.get("graphs"),
        snapshot.get("runs"),
        snapshot.get("node_states"),
        default_project_id=args.default_project,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
    )
    sys.stdout.write(report.summary() + "\n")
    return cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""The pure half of the store's calls: arguments checked into statement parameters.

Nothing here touches a connection, so the sync and the async store share it
as it is: paging (keyset conditions), run filters, graph changes, lease and
lifecycle parameters, and the text of each shape of listing statement.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import queries as q
from .dialects.base import Dialect
from .errors import ConflictError, ValidationError
from .models import (
    MAX_INTEGER,
    WorkflowGraph,
    WorkflowRun,
    WorkflowRunStatus,
    check_aware,
    check_graph,
    check_id,
    check_key,
    check_text,
    id_params,
    shown,
    to_statuses,
    utc_now,
)

DEFAULT_MAX_JSON_BYTES = 16 * 1024 * 1024
GRAPH_UPDATE_KEYS = ("name", "description", "graph")
UPDATE_RETRIES = 20


@dataclass(frozen=True)
class Pages:
    """How one kind of record is paged: newest first by (time_field, id)."""

    kind: type[WorkflowGraph] | type[WorkflowRun]
    time_field: str
    after_values_sql: str
    after_id_sql: q.Scoped[str]
    exists_sql: q.Scoped[str]


GRAPH_PAGES = Pages(WorkflowGraph, "created_at", q.GRAPH_AFTER, q.GRAPH_AFTER_ID, q.GRAPH_EXISTS)
RUN_PAGES = Pages(WorkflowRun, "started_at", q.RUN_AFTER, q.RUN_AFTER_ID, q.RUN_EXISTS)


def unknown_after(pages: Pages, after_id: str) -> ValidationError:
    return ValidationError(
        f"after: no {pages.kind.__name__} {after_id!r}; pass the last item of the previous page"
    )


def graph_changes(given: Mapping[str, Any]) -> dict[str, Any]:
    """Check the keys and values given to update_graph; drop the ones that are None."""
    unknown = sorted(set(given) - set(GRAPH_UPDATE_KEYS))
    if unknown:
        raise ValidationError(
            f"update_graph: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(GRAPH_UPDATE_KEYS)}"
        )
    changes: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if key == "graph":
            changes[key] = check_graph(value)
        else:
            changes[key] = check_text(key, value)
    return changes


def select(base: str, where: list[str], order: str, limit: int | None, params: dict[str, Any]) -> str:
    """The statement ``base WHERE ... order LIMIT :limit``; adds ``limit`` to ``params`` if given."""
    if limit is not None:
        params["limit"] = limit
    return _statement(base, tuple(where), order, limit is not None)


@functools.cache
def _statement(base: str, where: tuple[str, ...], order: str, limited: bool) -> str:
    # One text per shape of filters, built once: the same str object every call,
    # so its hash is cached for the prepare cache and the driver's statement cache.
    # The filters are fixed texts (at most five status placeholders): a few dozen shapes in all.
    sql = base
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += order
    if limited:
        sql += " LIMIT :limit"
    return sql


def keyset(
    db: Dialect, after: Any, pages: Pages, project_id: str | None, *, where: list[str], params: dict[str, Any]
) -> str | None:
    """Add the keyset condition for ``after``; return the id to check if the page is empty.

    Scoped to ``project_id``, an item of another project is refused like an unknown one.
    """
    if after is None:
        return None
    if isinstance(after, pages.kind):
        if project_id is not None and after.project_id != project_id:
            raise unknown_after(pages, after.id)
        at = getattr(after, pages.time_field)
        if at is None:
            raise ValidationError(
                f"after: this {pages.kind.__name__} was never stored (no {pages.time_field})"
            )
        params["after_at"] = db.encode_time(check_aware(f"after.{pages.time_field}", at))
        params["after_id"] = after.id
        where.append(pages.after_values_sql)
        return None
    if isinstance(after, str):
        params["after_id"] = check_key("after", after)
        where.append(pages.after_id_sql.pick(project_id))
        return after
    raise ValidationError(f"after: expected a {pages.kind.__name__} or its id, got {type(after).__name__}")


def run_filters(
    db: Dialect,
    project_id: str | None,
    status: Any,
    workflow_id: str | None,
    updated_before: datetime | None,
) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = []
    params: dict[str, Any] = {}
    if project_id is not None:
        where.append("project_id = :project_id")
        params["project_id"] = check_key("project_id", project_id)
    if status is not None:
        statuses = to_statuses(WorkflowRunStatus, status)
        if len(statuses) == 1:
            where.append("status = :status")
            params["status"] = statuses[0].value
        else:
            names = [f"status_{index}" for index in range(len(statuses))]
            where.append(f"status IN ({', '.join(':' + name for name in names)})")
            params.update(zip(names, (s.value for s in statuses), strict=True))
    if workflow_id is not None:
        where.append("workflow_id = :workflow_id")
        params["workflow_id"] = check_key("workflow_id", workflow_id)
    if updated_before is not None:
        where.append("updated_at < :updated_before")
        params["updated_before"] = db.encode_time(check_aware("updated_before", updated_before))
    return where, params


MAX_LEASE_SECONDS = 365 * 24 * 3600.0
"""The longest lease: a year."""


def lease_params(
    db: Dialect, run_id: str, owner: str, lease_seconds: float, project_id: str | None
) -> dict[str, Any]:
    if (
        isinstance(lease_seconds, bool)
        or not isinstance(lease_seconds, int | float)
        or not 0 < lease_seconds <= MAX_LEASE_SECONDS
        or math.isnan(lease_seconds)
    ):
        raise ValidationError(
            f"lease_seconds: expected a number of seconds above 0 and at most {MAX_LEASE_SECONDS:g}, "
            f"got {shown(lease_seconds)}"
        )
    return id_params(run_id, "run_id", project_id) | {
        "owner": check_id("owner", owner),
        "lease_seconds": float(lease_seconds),
        "now": db.encode_time(utc_now()),
    }


MAX_RENEWED_RUNS = 10_000
"""The most runs one ``renew_runs`` call takes."""


def renewal_params(
    db: Dialect, run_ids: object, owner: str, lease_seconds: float, project_id: str | None
) -> dict[str, Any]:
    """``renew_runs``' parameters: the lease's, and the ids as one JSON array (checked, at most
    MAX_RENEWED_RUNS)."""
    if isinstance(run_ids, str | bytes) or not isinstance(run_ids, Collection):
        raise ValidationError(f"run_ids: expected a collection of run ids, got {type(run_ids).__name__}")
    if len(run_ids) > MAX_RENEWED_RUNS:
        raise ValidationError(f"run_ids: {len(run_ids)} ids; one call renews at most {MAX_RENEWED_RUNS}")
    ids = [check_key("run_ids", run_id) for run_id in run_ids]
    return lease_params(db, "", owner, lease_seconds, project_id) | {"ids": db.encode_json(json.dumps(ids))}


def lifecycle_params(
    db: Dialect, run_id: str, project_id: str | None, last_message: str | None, lease_token: object = None
) -> dict[str, Any]:
    return id_params(run_id, "run_id", project_id) | {
        "last_message": check_text("last_message", last_message, optional=True),
        "now": db.encode_time(utc_now()),
        "lease_token": check_lease_token(lease_token),
    }


def check_lease_token(value: object) -> int | None:
    """``lease_token=``: None (an unfenced write) or the token a claim issued (an integer >= 1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTEGER:
        raise ValidationError(
            "lease_token: expected None or the lease_token a claim returned (an integer >= 1), "
            f"got {shown(value)}"
        )
    return value


def lost_lease(run_id: str, lease_token: int) -> ConflictError:
    """The error of a write fenced by ``lease_token`` on a run no longer held under it (naming no owner)."""
    return ConflictError(f"run {run_id!r}: lease {lease_token} is no longer held")

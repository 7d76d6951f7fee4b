"""Stored rows to records: the columns of ``queries.*_COLUMNS``, in order.

Runs and node states come back as lazy records (decoded on first field read,
see :class:`~workflow_db.models.LazyFields`); projects and graphs, read a few
at a time, are decoded at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import queries as q
from .dialects.base import Row
from .models import (
    TIME_DECODERS,
    LazyRecords,
    Project,
    WorkflowGraph,
    WorkflowNodeState,
    WorkflowNodeStatus,
    WorkflowRun,
    WorkflowRunStatus,
    record_builder,
    stored_time,
)

_build_project = record_builder(Project)
_build_graph = record_builder(WorkflowGraph)
_RUN_STATUS = {status.value: status for status in WorkflowRunStatus}
_NODE_STATUS = {status.value: status for status in WorkflowNodeStatus}
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_time = TIME_DECODERS  # inline below as _time[type(value)](value): no Python call per timestamp


def _json(text: str) -> Any:
    """Stored JSON text as Python values.

    The C scanner ``json.loads`` ends in, called directly: a third of the
    cost. Stored text is one JSON value as our encoder or the database wrote
    it; anything else (whitespace around it, say) goes through ``json.loads``.
    """
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def project_from_row(row: Row) -> Project:
    """The project of a ``PROJECT_COLUMNS`` row."""
    return _build_project(row[0], row[1], stored_time(row[2]))


def graph_from_row(row: Row) -> WorkflowGraph:
    """The graph of a ``GRAPH_COLUMNS`` row."""
    return _build_graph(
        row[1],
        row[2],
        _json(row[4]),
        row[3],
        row[0],
        row[5],
        stored_time(row[6]),
        stored_time(row[7]),
    )


def _run_values(row: Row) -> tuple[Any, ...]:
    return (
        row[0],
        row[1],
        row[2],
        row[3],
        _RUN_STATUS[row[4]],
        None if row[5] is None else _json(row[5]),
        None if row[6] is None else _json(row[6]),
        _time[type(row[7])](row[7]),
        None if row[8] is None else _time[type(row[8])](row[8]),
        row[9],
        _time[type(row[10])](row[10]),
        None if row[11] is None else _time[type(row[11])](row[11]),
        None if row[12] is None else _json(row[12]),
        row[13],
        None if row[14] is None else _time[type(row[14])](row[14]),
        row[15],
    )


def _node_state_values(row: Row) -> tuple[Any, ...]:
    return (
        row[0],
        row[1],
        _NODE_STATUS[row[2]],
        float(row[3]),
        _json(row[4]),
        None if row[5] is None else _time[type(row[5])](row[5]),
        None if row[6] is None else _time[type(row[6])](row[6]),
        row[7],
    )


_runs = LazyRecords(WorkflowRun, _run_values)
_node_states = LazyRecords(WorkflowNodeState, _node_state_values)

run_from_row = _runs.one
"""The run of a ``RUN_COLUMNS`` row."""
runs_from_rows = _runs.many
"""The runs of ``RUN_COLUMNS`` rows, in order."""
node_state_from_row = _node_states.one
"""The node state of a ``NODE_COLUMNS`` row."""
node_states_from_rows = _node_states.many
"""The node states of ``NODE_COLUMNS`` rows, in order."""


RUN_WIDTH = len(q.RUN_COLUMNS.split(","))
"""How many columns a run has in a row (``queries.RUN_COLUMNS``)."""


@dataclass(frozen=True)
class RunSummary:
    """A run with its node states, as a status page shows it."""

    run: WorkflowRun
    nodes: list[WorkflowNodeState]
    """As ``list_node_states`` returns them: in the order of the graph's nodes."""
    progress: float
    """The mean progress of the nodes (0.0 without nodes)."""
    counts: MappingProxyType[WorkflowNodeStatus, int]
    """How many nodes are in each status, every status present (zeros included)."""
    running: list[str]
    """The ids of the RUNNING nodes, in node order."""


def run_summary_from_rows(rows: list[Row]) -> RunSummary | None:
    """The rows of ``queries.RUN_SUMMARY`` (the run's columns, then one node state's) as a summary."""
    if not rows:
        return None
    nodes = node_states_from_rows([row[RUN_WIDTH:] for row in rows if row[RUN_WIDTH] is not None])
    counts = dict.fromkeys(WorkflowNodeStatus, 0)
    for node in nodes:
        counts[node.status] += 1
    return RunSummary(
        run=run_from_row(rows[0][:RUN_WIDTH]),
        nodes=nodes,
        progress=sum(node.progress for node in nodes) / len(nodes) if nodes else 0.0,
        counts=MappingProxyType(counts),
        running=[node.node_id for node in nodes if node.status is WorkflowNodeStatus.RUNNING],
    )

"""Generate the synchronous store from its asynchronous source, so each call is written once.

    python scripts/async_to_sync.py          # rewrite the generated modules
    python scripts/async_to_sync.py --check  # exit 1 if one of them is out of date (tox -e lint)

Each ``workflow_db/<name>_async.py`` in :data:`MODULES` becomes
``workflow_db/<name>.py``: ``async`` before ``def``/``with``/``for`` and every
``await`` are dropped, and the names of :data:`RENAMES` are replaced (in code,
strings and comments), token by token, so comments and layout survive. The
result is formatted with ``ruff format``. The same idea as psycopg's
``tools/async_to_sync.py``, on tokens instead of a syntax tree: the async
source is written so that this is all it takes.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workflow_db"

MODULES = ("store", "lifecycle", "leases", "feed", "checkpoint_saver", "dialects/replica_reads")
"""The modules generated: ``<name>.py`` from ``<name>_async.py``."""

RENAMES = {
    "AsyncWorkflowStore": "WorkflowStore",
    "AsyncRunLifecycle": "RunLifecycle",
    "AsyncRunLeases": "RunLeases",
    "AsyncChangeFeed": "ChangeFeed",
    "AsyncDatabase": "Database",
    "AsyncSession": "Session",
    "AsyncWorkflowCheckpointSaver": "WorkflowCheckpointSaver",
    "aput": "put",
    "aput_writes": "put_writes",
    "aget_tuple": "get_tuple",
    "alist": "list",
    "adelete_thread": "delete_thread",
    "adelete_for_runs": "delete_for_runs",
    "acopy_thread": "copy_thread",
    "aprune": "prune",
    "AsyncIterator": "Iterator",
    "asynccontextmanager": "contextmanager",
    "connect_async": "connect",
    "AsyncReplicaReads": "ReplicaReads",
    "AsyncPostgresDatabase": "PostgresDatabase",
    "postgresql_async": "postgresql",
    "replica_reads_async": "replica_reads",
    "base_async": "base",
    "asyncio": "time",
    **{f"{name}_async": name for name in MODULES},
}
"""Async names and their synchronous counterparts."""

_NAMES = re.compile(r"\b(" + "|".join(map(re.escape, RENAMES)) + r")\b")
_DROPPED_BEFORE = frozenset({"def", "with", "for"})


def header(source: Path) -> str:
    """The first lines of a generated module."""
    return (
        f"# Generated from {source.name} by scripts/async_to_sync.py: edit that file, then run the script.\n"
    )


def to_sync(text: str) -> str:
    """The synchronous version of the async module ``text`` (before formatting)."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for index, token in enumerate(tokens):
        start = offsets[token.start[0] - 1] + token.start[1]
        end = offsets[token.end[0] - 1] + token.end[1]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        dropped = token.string == "await" or (
            token.string == "async" and following is not None and following.string in _DROPPED_BEFORE
        )
        if token.type == tokenize.NAME and dropped and following is not None:
            edits.append((start, offsets[following.start[0] - 1] + following.start[1], ""))
        elif token.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT):
            renamed = _NAMES.sub(lambda match: RENAMES[match.group(1)], token.string)
            renamed = renamed.replace("async with", "with").replace("async for", "for")
            if renamed != token.string:
                edits.append((start, end, renamed))
    for start, end, replacement in reversed(edits):
        text = text[:start] + replacement + text[end:]
    return text


def generate(source: Path) -> str:
    """The text of the module generated from ``source``: imports sorted, then formatted by ruff."""
    text = header(source) + to_sync(source.read_text())
    for command in (["check", "--select", "I", "--fix", "--exit-zero", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(source), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) every generated module; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in MODULES:
        source, target = PACKAGE / f"{name}_async.py", PACKAGE / f"{name}.py"
        text = generate(source)
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.relative_to(ROOT))
        if not args.check:
            target.write_text(text)
    for path in stale:
        print(f"{path}: {'out of date' if args.check else 'written'}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

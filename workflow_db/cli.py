"""What the two command lines share: connection options, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from .dialects import DEFAULT_URL, URL_ENVIRONMENT_VARIABLE, Database, connect, redact_text
from .errors import DatabaseNotFoundError, WorkflowDBError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors never show a password (a URL given where a verb was expected)."""

    def error(self, message: str) -> NoReturn:
        super().error(redact_text(message))


def parser_for(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--url``, ``--timeout`` and ``--version``."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s (workflow_db {__version__})")
    parser.add_argument("--url", help="database URL (default: $WORKFLOW_DB_URL, else sqlite:///workflow.db)")
    parser.add_argument(
        "--timeout", type=float, default=30.0,
        help="seconds to wait for the database (SQLite: the busy timeout); default 30",
    )  # fmt: skip
    return parser


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    command: Callable[[Database, argparse.Namespace], int],
    *,
    creates_database: Callable[[argparse.Namespace], bool] = lambda args: False,
    empty_if_absent: Callable[[argparse.Namespace], bool] = lambda args: False,
) -> int:
    """Parse ``argv``, connect, run ``command``; return the exit code.

    0 success, 1 failure (one ``error:`` line on stderr, no traceback), 2 usage
    error (bad arguments, or a malformed or unsupported URL). A SQLite file
    that does not exist is created only when ``creates_database(args)``; when
    ``empty_if_absent(args)`` the command runs on an empty in-memory database
    instead, with ``args.absent`` naming the one that is not there (else None).
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or EXIT_OK)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args.absent = None
    try:
        db = connect(args.url, timeout=args.timeout, create=creates_database(args))
    except DatabaseNotFoundError as exc:
        if not empty_if_absent(args):
            return _fail(exc, EXIT_FAILURE)
        args.absent = args.url or os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
        db = connect("sqlite:///:memory:")
    except ValueError as exc:
        return _fail(exc, EXIT_USAGE)
    except WorkflowDBError as exc:
        return _fail(exc, EXIT_FAILURE)
    with db:
        try:
            return command(db, args)
        except WorkflowDBError as exc:
            return _fail(exc, EXIT_FAILURE)


def _fail(exc: Exception, code: int) -> int:
    sys.stderr.write(f"error: {exc}\n")
    return code

"""The thin dialect adapter: :func:`connect` turns a URL into a :class:`Database`."""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from .base import DEFAULT_POLL_INTERVAL, Database, DialectSQL, Session
from .base_async import AsyncDatabase, AsyncSession
from .replicas import DEFAULT_REPLICA_WAIT, REPLICA_URLS_ENVIRONMENT_VARIABLE, replica_urls_from_environment

if TYPE_CHECKING:
    from .postgresql_async import AsyncPostgresDatabase
    from .sqlite_async import AsyncSQLiteDatabase

DEFAULT_URL = "sqlite:///workflow.db"
URL_ENVIRONMENT_VARIABLE = "WORKFLOW_DB_URL"

__all__ = [
    "DEFAULT_URL",
    "AsyncDatabase",
    "AsyncSession",
    "Database",
    "DialectSQL",
    "OpeningDatabase",
    "Session",
    "connect",
    "connect_async",
    "redact_url",
    "url_secrets",
]


# password= and sslpassword= in the query string: libpq reads both from a URL, with
# the key percent-decoded (pass%77ord= is password=).
_QUERY_PAIR = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
_SECRET_KEYS = frozenset({"password", "sslpassword"})
# The same in libpq's keyword/value form: password=x, password = 'a b\' c'.
_KEYWORD_SECRET = re.compile(r"\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)", re.IGNORECASE)
# LIBPQ_CHOICES: the values libpq accepts for its enumerated parameters, checked
# before connecting (libpq itself would only refuse them at each login attempt).
LIBPQ_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "replication": ("0", "1", "true", "false", "on", "off", "yes", "no", "database"),
}


def _split_userinfo(url: str) -> tuple[str, str, str | None, str]:
    """``(scheme://, user, password or None, the rest after '@')``, found without a URL parser.

    The password may hold an unencoded ``/``, ``#`` or ``?`` (a parser would
    end the host there and echo the password as a path): the user information
    is everything up to the last ``@``. An ``@`` later in the URL only makes
    the redaction hide more, never less.
    """
    scheme, separator, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    if not separator or not at:
        return scheme + separator, "", None, rest
    user, colon, password = userinfo.partition(":")
    return scheme + separator, user, password if colon else None, after


def _query_secrets(url: str) -> list[re.Match[str]]:
    return [match for match in _QUERY_PAIR.finditer(url) if unquote(match.group(2)).lower() in _SECRET_KEYS]


def redact_url(url: str) -> str:
    """``url`` with every password libpq would read (user information, ``password=`` and
    ``sslpassword=`` however their keys are encoded, or the keyword/value form) replaced by
    ``***``: safe for logs and errors."""
    if "://" not in url:  # libpq's keyword/value form: host=h password=x
        return _KEYWORD_SECRET.sub(r"\1***", url)
    prefix, user, password, rest = _split_userinfo(url)
    shown = f"{prefix}{user}:***@{rest}" if password is not None else url
    for match in reversed(_query_secrets(shown)):
        shown = f"{shown[: match.start(3)]}***{shown[match.end(3) :]}"
    return shown


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it hidden (a message that may echo one)."""
    return re.sub(r"\b[A-Za-z][\w+.-]*://\S+", lambda match: redact_url(match.group(0)), text)


def url_secrets(url: str) -> list[str]:
    """Every password in ``url``, as written and percent-decoded (to scrub from driver messages)."""
    if "://" not in url:
        found = [match.group(2).strip("'") for match in _KEYWORD_SECRET.finditer(url)]
    else:
        _, _, password, _ = _split_userinfo(url)
        found = [password] if password else []
        found += [match.group(3) for match in _query_secrets(url)]
    return sorted(
        {form for secret in found if secret for form in (secret, unquote(secret))}, key=len, reverse=True
    )


def connect(
    url: str | None = None,
    *,
    min_size: int = 1,
    max_size: int = 8,
    timeout: float = 30.0,
    prepare_threshold: int | None = 5,
    synchronous: str = "NORMAL",
    create: bool = True,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    listen_url: str | None = None,
    replica_urls: Sequence[str] | None = None,
    replica_wait: float = DEFAULT_REPLICA_WAIT,
) -> Database:
    """Connect to the database at ``url`` (default: ``$WORKFLOW_DB_URL``, else ``sqlite:///workflow.db``).

    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
      ``sqlite:///:memory:`` (private, shared by all threads of this object);
      ``timeout`` is the busy timeout, ``synchronous`` the PRAGMA (NORMAL: a
      commit may be lost on power loss, never on an application crash);
      ``create=False`` refuses a file that does not exist yet
      (DatabaseUnavailableError) instead of creating an empty one.
    * ``postgresql://`` or ``postgres://``: a ``psycopg_pool.ConnectionPool`` of
      ``min_size``..``max_size`` connections; ``timeout`` bounds waiting for a
      connection; ``prepare_threshold=None`` disables prepared statements
      (needed behind PgBouncer in transaction mode; ``?prepare_threshold=none``
      in the URL does the same and wins over the argument).
    * The change feed's watchers (``store.watch``): on PostgreSQL,
      ``listen_url`` is a direct connection (never PgBouncer in transaction
      mode) on which one ``LISTEN`` wakes them as changes commit; without it,
      or while it is down, they look every ``poll_interval`` seconds, as they
      always do on SQLite (where writes of this process wake them at once).
    * ``replica_urls`` (default: ``$WORKFLOW_DB_REPLICA_URLS``, comma-separated):
      PostgreSQL streaming replicas of ``url``. Reads outside a transaction
      (``get_*``, ``list_*``, ``count_runs``, ``run_summary``) go to one that
      has replayed every commit of this process, waiting up to
      ``replica_wait`` seconds for it, else to the primary; a replica that is
      down or behind is skipped for a while. Writes, transactions, leases, the
      feed and migrations use ``url``.

    Raises ValueError for an unknown scheme or a malformed URL (the message
    never contains the password) and DatabaseUnavailableError when the server
    does not answer within ``timeout`` seconds.
    """
    dialect, location, options = _target(**locals())
    if dialect == "sqlite":
        from .sqlite import SQLiteDatabase

        return SQLiteDatabase(location, **options)
    from .postgresql import PostgresDatabase

    return PostgresDatabase(location, **options)


def connect_async(
    url: str | None = None,
    *,
    min_size: int = 1,
    max_size: int = 8,
    timeout: float = 30.0,
    prepare_threshold: int | None = 5,
    synchronous: str = "NORMAL",
    create: bool = True,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    listen_url: str | None = None,
    replica_urls: Sequence[str] | None = None,
    replica_wait: float = DEFAULT_REPLICA_WAIT,
) -> OpeningDatabase:
    """:func:`connect` for asyncio: ``await connect_async(url)``, or ``async with connect_async(url) as db``.

    The same URLs, options and errors. PostgreSQL through a
    ``psycopg_pool.AsyncConnectionPool``; SQLite through the sync adapter's
    connections on worker threads, so no statement runs on the event loop.
    ValueError comes at once; DatabaseUnavailableError when awaited.
    """
    dialect, location, options = _target(**locals())
    if dialect == "sqlite":
        from .sqlite_async import AsyncSQLiteDatabase

        return OpeningDatabase(AsyncSQLiteDatabase(location, **options))
    from .postgresql_async import AsyncPostgresDatabase

    return OpeningDatabase(AsyncPostgresDatabase(location, **options))


class OpeningDatabase:
    """What :func:`connect_async` returns: await it for the open database, or use it in ``async with``."""

    def __init__(self, database: AsyncSQLiteDatabase | AsyncPostgresDatabase) -> None:
        self._database = database

    def __await__(self) -> Generator[Any, None, AsyncDatabase]:
        return self._database.open().__await__()

    async def __aenter__(self) -> AsyncDatabase:
        return await self._database.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._database.close()


def _target(url: str | None, **options: Any) -> tuple[str, str, dict[str, Any]]:
    """``(dialect, path or conninfo, the adapter's options)`` for a URL; ValueError if it is wrong."""
    if url is None:
        url = os.environ.get(URL_ENVIRONMENT_VARIABLE) or DEFAULT_URL
    if not isinstance(url, str):
        raise ValueError(f"database URL: expected a string, got {type(url).__name__}")
    for name, allowed in (
        ("timeout", "a positive number of seconds"),
        ("poll_interval", "a positive number of seconds"),
        ("replica_wait", "a number of seconds, 0 or more"),
    ):
        seconds = options[name]
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not (seconds >= 0 if name == "replica_wait" else seconds > 0)
        ):
            raise ValueError(f"{name}: expected {allowed}, got {seconds!r}")
    replica_urls = options["replica_urls"]
    if replica_urls is None:
        replica_urls = replica_urls_from_environment()
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise ValueError(
            "database URL has no scheme: expected sqlite:///path.db or postgresql://user@host/db"
        )
    listen_url = options["listen_url"]
    if scheme == "sqlite":
        if listen_url is not None:
            raise ValueError("listen_url: only for PostgreSQL (SQLite's watchers poll the file)")
        if replica_urls:
            raise ValueError(
                f"replica_urls (or ${REPLICA_URLS_ENVIRONMENT_VARIABLE}): only for PostgreSQL, not {scheme}"
            )
        sqlite_options = {key: options[key] for key in ("timeout", "synchronous", "create", "poll_interval")}
        return "sqlite", _sqlite_path(rest), sqlite_options
    if scheme in ("postgresql", "postgres"):
        keys = ("min_size", "max_size", "timeout", "prepare_threshold", "poll_interval")
        conninfo, pool_options = _postgresql_target(url, {key: options[key] for key in keys})
        if listen_url is not None:
            pool_options["listen_conninfo"] = _listen_conninfo(listen_url)
            pool_options["secrets"] = sorted(
                {*pool_options["secrets"], *url_secrets(listen_url)}, key=len, reverse=True
            )
        if replica_urls:
            pool_options["replica_conninfos"] = _replica_conninfos(replica_urls)
            pool_options["replica_wait"] = options["replica_wait"]
            pool_options["secrets"] = sorted(
                {*pool_options["secrets"], *(secret for url in replica_urls for secret in url_secrets(url))},
                key=len,
                reverse=True,
            )
        return "postgresql", conninfo, pool_options
    raise ValueError(f"database URL scheme {scheme!r} is not supported: use sqlite:/// or postgresql://")


def _listen_conninfo(listen_url: object) -> str:
    """The conninfo of a ``listen_url`` (ValueError, without its password, if it is not a PostgreSQL URL)."""
    if not isinstance(listen_url, str) or listen_url.partition("://")[0].lower() not in (
        "postgresql",
        "postgres",
    ):
        shown = redact_url(listen_url) if isinstance(listen_url, str) else type(listen_url).__name__
        raise ValueError(f"listen_url: expected a postgresql:// URL of a direct connection, got {shown}")
    _check_conninfo(listen_url, "listen_url: ")
    return listen_url


def _replica_conninfos(replica_urls: object) -> list[tuple[str, str]]:
    """``(conninfo, URL without password)`` of each replica URL (ValueError naming the one that is wrong)."""
    if isinstance(replica_urls, str) or not isinstance(replica_urls, list | tuple):
        raise ValueError(
            f"replica_urls: expected a list of postgresql:// URLs, got {type(replica_urls).__name__}"
        )
    targets = []
    for index, url in enumerate(replica_urls):
        field = f"replica_urls[{index}]"
        if not isinstance(url, str) or url.partition("://")[0].lower() not in ("postgresql", "postgres"):
            shown = redact_url(url) if isinstance(url, str) else type(url).__name__
            raise ValueError(f"{field}: expected a postgresql:// URL of a streaming replica, got {shown}")
        _check_conninfo(url, f"{field}: ")
        targets.append((url, redact_url(url)))
    return targets


def _check_conninfo(url: str, field: str = "") -> None:
    """ValueError (``field`` first, the password hidden) unless libpq can read ``url`` and accepts
    the values of its enumerated parameters (``sslmode``, ``target_session_attrs``, ...)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    reason = None
    try:
        parameters = conninfo_to_dict(url)
    except ProgrammingError as exc:  # raised below, outside this block: no driver error in its context
        # Only a parameter's name: libpq's own words can quote a piece of an unencoded password.
        unknown = re.search(r'invalid URI query parameter: "(\w+)"', str(exc))
        reason = f'unknown parameter "{unknown.group(1)}"; expected ' if unknown else "expected "
    if reason is not None:
        raise ValueError(
            f"{field}malformed postgresql URL {redact_url(url)}: {reason}"
            "postgresql://user[:password]@host[:port][,host2[:port2]...]/dbname[?parameter=value...]"
        )
    ports = str(parameters.get("port", "")).split(",")
    if not all(port.isdigit() and 0 < int(port) < 65536 for port in ports if port):
        raise ValueError(
            f"{field}malformed postgresql URL {redact_url(url)}: port={parameters['port']!r}, "
            "expected port numbers from 1 to 65535"
        )
    for name, allowed in LIBPQ_CHOICES.items():
        value = str(parameters.get(name, allowed[0]))
        if value.lower() not in allowed:
            raise ValueError(f"{field}{name}={value!r} in the URL: libpq accepts {', '.join(allowed)}")


def _prepare_threshold(value: str) -> int | None:
    if value.lower() in ("", "none"):
        return None
    if not value.isdigit():
        raise ValueError(f"prepare_threshold in the URL: expected a whole number or none, got {value!r}")
    return int(value)


def _sqlite_path(rest: str) -> str:
    host, slash, path = rest.partition("/")
    if host or not slash or not path:
        raise ValueError(
            "malformed sqlite URL: expected sqlite:///relative.db, sqlite:////absolute.db "
            "or sqlite:///:memory:"
        )
    return unquote(path)


def _postgresql_target(url: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    display_url = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None  # raised below, outside this block: no parser error in its context
    if parts is None:
        raise ValueError(f"malformed postgresql URL {display_url}: expected postgresql://user@host/dbname")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = [value for key, value in query if key == "prepare_threshold"]
    if ours:  # ours, not libpq's: set in WORKFLOW_DB_URL when behind PgBouncer
        options["prepare_threshold"] = _prepare_threshold(ours[-1])
        url = parts._replace(query=urlencode([(k, v) for k, v in query if k != "prepare_threshold"])).geturl()
    if options["min_size"] < 0 or options["max_size"] < max(1, options["min_size"]):
        raise ValueError(
            f"pool size: need 0 <= min_size <= max_size and max_size >= 1, "
            f"got min_size={options['min_size']}, max_size={options['max_size']}"
        )
    _check_conninfo(url)
    return url, {"display_url": display_url, "secrets": url_secrets(url), **options}

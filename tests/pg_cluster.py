"""Finding a PostgreSQL server for the tests, or starting a throw-away cluster."""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

LOCAL_PORT = 5432


def find_server() -> str | None:
    """``$WORKFLOW_DB_TEST_PG_URL``, else a server answering on 127.0.0.1:5432, else None."""
    url = os.environ.get("WORKFLOW_DB_TEST_PG_URL")
    if url:
        return url
    user = os.environ.get("PGUSER") or getpass.getuser()
    url = f"postgresql://{user}@127.0.0.1:{LOCAL_PORT}/postgres"
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return None
    return url


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    """A PostgreSQL cluster of the test's own, on its own port, in a temporary folder."""

    def __init__(
        self, directory: Path, port: int, initdb: str, pg_ctl: str, settings: dict[str, str] | None = None
    ) -> None:
        self.directory = directory
        self.port = port
        self.settings = settings or {}
        """Server settings given on its command line (``-c name=value``)."""
        self._pg_ctl = pg_ctl
        self._initdb = initdb
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @classmethod
    def start(cls, directory: Path, settings: dict[str, str] | None = None) -> ThrowawayCluster | None:
        """Initialise and start a cluster, or None if initdb/pg_ctl are not installed."""
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            return None
        if os.geteuid() == 0:  # initdb refuses to run as root: run it as postgres, in a folder it can reach
            directory = Path(tempfile.mkdtemp(prefix="workflow_db-pg-"))
            directory.chmod(0o755)
            shutil.chown(directory, "postgres")
        cluster = cls(directory, free_port(), initdb, pg_ctl, settings)
        cluster._run(initdb, "-D", str(directory / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        cluster.resume()
        return cluster

    @classmethod
    def standby_of(cls, primary: ThrowawayCluster) -> ThrowawayCluster:
        """A streaming replica of ``primary`` (``pg_basebackup -R``), started on a port of its own
        with the primary's settings."""
        directory = Path(tempfile.mkdtemp(prefix="workflow_db-pg-"))
        if os.geteuid() == 0:
            directory.chmod(0o755)
            shutil.chown(directory, "postgres")
        standby = cls(directory, free_port(), primary._initdb, primary._pg_ctl, primary.settings)
        basebackup = _binary("pg_basebackup")
        assert basebackup is not None
        standby._run(basebackup, "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                     "-D", str(directory / "data"), "-R", "-X", "stream")  # fmt: skip
        standby.resume()
        return standby

    def promote(self) -> None:
        """Make this standby a primary (``pg_ctl promote``, waiting until it takes writes)."""
        self._run(self._pg_ctl, "-D", str(self.directory / "data"), "-w", "promote")

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True)

    def resume(self) -> None:
        """Start (again) the server on the cluster's port."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(
            self._pg_ctl,
            "-D",
            str(self.directory / "data"),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )

    def _processes(self) -> list[int]:
        """The postmaster and every process it started."""
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP the server and all its processes: connections stay open, nothing answers."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT what :meth:`freeze` stopped."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server at once (its clients see the connection break; a primary's unreplicated
        commits may be lost)."""
        self._run(self._pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop the server if it runs, and delete the cluster's folder."""
        if (self.directory / "data" / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

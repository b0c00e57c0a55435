"""A throwaway PostgreSQL cluster from Debian's binaries, on a free port in a temporary directory.

initdb refuses to run as root, so under root (CI, this machine) the cluster runs as the `postgres`
system user that Debian's package creates, in a directory that user owns."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.server import free_port
from tests.system_programs import require_program


def _newest_initdb() -> Path | None:
    initdbs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    return Path(initdbs[-1]) if initdbs else None


@dataclass
class PostgresCluster:
    root: Path
    port: int
    bin_dir: Path
    as_postgres: list[str]

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = "easel_" + secrets.token_hex(4)
        with psycopg.connect(self._admin_dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self._admin_dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    def _admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        try:
            self._pg_ctl("-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> PostgresCluster:
    bin_dir = require_program(
        _newest_initdb(),
        "PostgreSQL's server (initdb) not found under /usr/lib/postgresql/*/bin",
    ).parent
    root = Path(tempfile.mkdtemp(prefix="easel-postgres-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PostgresCluster(root, port, bin_dir, as_postgres)
    # fsync off: a test cluster need not survive a power cut, and it makes commits cheap.
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    )
    try:
        cluster._pg_ctl("-o", options, "-l", str(root / "server.log"), "-w", "start")
    except subprocess.CalledProcessError as exc:
        log = (
            (root / "server.log").read_text(errors="replace")
            if (root / "server.log").exists()
            else ""
        )
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n{log}") from exc
    return cluster


def set_connections_allowed(cluster: PostgresCluster, url: str, allowed: bool) -> None:
    """Open or close a database to new connections, dropping the open ones when closing: a real
    outage for the clients of that database while the server itself keeps running."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster._admin_dsn(), autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )

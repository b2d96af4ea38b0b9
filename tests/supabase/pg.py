"""A real PostgreSQL for the schema tests: the server on 127.0.0.1:5432 when one answers (CI), otherwise
one started here from Debian's binaries (initdb + pg_ctl in a temp dir), so `make test` works anywhere."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
STANDINS = Path(__file__).with_name("standins.sql")


@dataclass
class PgServer:
    host: str
    port: int
    user: str = "postgres"
    datadir: Path | None = None  # set when this process started the server
    bindir: Path | None = None

    def dsn(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname} connect_timeout=5"

    def describe(self) -> str:
        origin = f"started by the tests in {self.datadir}" if self.datadir else "already running"
        return f"PostgreSQL at {self.host}:{self.port} ({origin})"

    def stop(self) -> None:
        if self.datadir is not None and self.bindir is not None:
            _run_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])


def _answers(host: str, port: int) -> bool:
    try:
        with psycopg.connect(f"host={host} port={port} user=postgres dbname=postgres connect_timeout=3"):
            return True
    except psycopg.Error:
        return False


def _bindir() -> Path:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("no PostgreSQL server answers and initdb is not installed (apt-get install postgresql)")


def _run_as_postgres(cmd: list[str]) -> None:
    """initdb refuses to run as root: drop to the `postgres` system user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_own(tmp: Path) -> PgServer:
    bindir = _bindir()
    tmp.mkdir(parents=True, exist_ok=True)
    datadir, sockdir = tmp / "pgdata", tmp / "pgsock"
    sockdir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for path in (tmp, sockdir):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    _run_as_postgres([str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    _run_as_postgres([str(bindir / "pg_ctl"), "-D", str(datadir), "-w", "-t", "60", "-l", str(tmp / "pg.log"),
                      "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sockdir} -c fsync=off", "start"])
    deadline = time.monotonic() + 30
    while not _answers("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"own PostgreSQL did not come up; see {tmp / 'pg.log'}")
        time.sleep(0.2)
    return PgServer("127.0.0.1", port, datadir=datadir, bindir=bindir)


def find_or_start(tmp: Path) -> PgServer:
    host = os.environ.get("EZREC_TEST_PGHOST", "127.0.0.1")
    port = int(os.environ.get("EZREC_TEST_PGPORT", "5432"))
    if _answers(host, port):
        return PgServer(host, port)
    return start_own(tmp)


def create_database(server: PgServer, name: str) -> str:
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STANDINS.read_text())
        for migration in MIGRATIONS:
            conn.execute(migration.read_text())
    return dsn


def drop_database(server: PgServer, name: str) -> None:
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

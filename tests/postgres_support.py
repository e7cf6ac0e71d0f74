"""The test PostgreSQL: its URL, schemas of a test's own (dropped afterwards), and a
private server (:class:`PrivatePostgres`) for tests that stop or restart it.

Each user gets a fresh schema, selected through ``search_path`` in the URL, so tests
(and the soak script) are isolated from each other and can run again and in parallel.
An unreachable server makes the caller error out: it never skips a test.

The shared server is never stopped: a private one is made by ``initdb`` in a fresh
folder, listens on a free port of 127.0.0.1 (its Unix socket in that folder), trusts
local connections and is stopped and deleted afterwards. As root, PostgreSQL's
programs run as the ``postgres`` user (they refuse to run as root). A machine
without them fails the test, it never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("LOOKALIKE_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


def with_search_path(url: str, schema: str) -> str:
    """Add libpq ``options=-csearch_path=<schema>`` to a SQLAlchemy URL."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema(base: str | None = None, prefix: str = "test_") -> Iterator[str]:
    """A PostgreSQL URL whose connections use a new, empty schema; dropped on exit."""
    base = base or postgres_url()
    schema = f"{prefix}{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:  # fails loudly if PostgreSQL is not there
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(base, schema)
    finally:
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    assert found[-1], f"PostgreSQL's {name} is not installed (/usr/lib/postgresql/*/bin)"
    return found[-1]


class PrivatePostgres:
    """``init()`` then ``start()``; ``restart()`` and ``stop()`` act on this server only."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lookalike-test-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}\n{self.logs()}"

    def _options(self) -> str:
        return (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off")  # fmt: skip

    def init(self) -> None:
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "-o", self._options(), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is terminated (what a restart does to the workers)."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-m", mode, "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [*self._as_postgres, _bin("pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
        )  # fmt: skip
        return status.returncode == 0

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def destroy(self) -> None:
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

"""The test Redis: its URL, key prefixes of a test's own (cleaned up afterwards),
waiting for a redis-server a test started itself, and a private redis-server
(:class:`PrivateRedis`) for tests that stop or restart it.

A missing Redis makes the caller error out (``ping``); it never skips a test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

TEST_REDIS_URL = os.environ.get("LOOKALIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    """Delete every key that starts with ``prefix`` (leave nothing in a shared Redis)."""
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


@contextmanager
def own_prefix(start: str, url: str = TEST_REDIS_URL) -> Iterator[tuple[redis.Redis, str]]:
    """A client of the Redis at ``url`` and a unique prefix ``{start}{random hex}:``;
    on exit the prefix's keys are deleted and the client closed."""
    client = redis.Redis.from_url(url)
    client.ping()
    prefix = f"{start}{uuid.uuid4().hex[:12]}:"
    try:
        yield client, prefix
    finally:
        delete_prefixed(client, prefix)
        client.close()


def wait_until_up(client: redis.Redis, process: subprocess.Popen, seconds: float) -> None:
    """Wait until the redis-server just started as ``process`` answers ``client``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"redis-server exited: {output}") from None
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own: stopping or restarting it disturbs nobody else.

    No persistence: a restart loses every key, as a crashed Redis without AOF does.
    ``start`` again after ``kill`` serves the same URL.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        wait_until_up(client, self.process, 10)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

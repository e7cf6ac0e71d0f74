"""The test Redis: its URL, key prefixes of a test's own (cleaned up afterwards), and
waiting for a redis-server a test started itself.

A missing Redis makes the caller error out (``ping``); it never skips a test.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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

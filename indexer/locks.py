"""A Redis lock for the one re-index that may run at a time across machines.

The index store's own re-index lock is an ``flock``: it keeps two processes of
one machine apart. Workers on several machines share a Redis, and this lock
(``SET key value NX PX ttl``) keeps them apart too. Its value names the holder
(host, pid, start time) for the message the loser records. A holder renews the
expiry from a background thread every third of ``ttl``; a holder that dies stops
renewing, and the lock expires ``ttl`` seconds later, so a killed worker never
blocks re-indexing for long. Release deletes the key only if it still holds
this holder's value (compare and delete in one Lua script).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import redis

from indexer.config import Settings
from indexer.index.errors import ReindexRunning

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


@contextlib.contextmanager
def redis_lock(client: redis.Redis, key: str, ttl: float) -> Iterator[None]:
    """Hold ``key`` for the duration of the block, or raise :class:`ReindexRunning`."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {started} [{uuid.uuid4().hex}]"
    ttl_ms = max(1000, int(ttl * 1000))
    if not client.set(key, holder, nx=True, px=ttl_ms):
        other = client.get(key)
        who = other.decode("utf-8", "replace").rsplit(" [", 1)[0] if other else "holder unknown"
        raise ReindexRunning(
            f"a re-index is already running ({who}; Redis lock {key}); not starting another"
        )
    renew = client.register_script(_RENEW)
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(ttl / 3):
            try:
                if not renew(keys=[key], args=[holder, ttl_ms]):
                    log.error("lost the Redis lock %s (expired or taken over)", key)
                    return
            except redis.RedisError as exc:
                log.warning("could not renew the Redis lock %s: %s", key, exc)

    thread = threading.Thread(target=keep_alive, name="reindex-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            client.register_script(_RELEASE)(keys=[key], args=[holder])
        except redis.RedisError as exc:  # it expires by itself after ttl
            log.warning("could not release the Redis lock %s: %s", key, exc)


def reindex_lock_factory(
    settings: Settings,
) -> Callable[[], contextlib.AbstractContextManager] | None:
    """The cross-machine re-index lock for ``settings``, or ``None`` without Redis."""
    url = settings.lock_redis_url
    if url is None:
        return None
    key = f"{settings.broker_key_prefix}reindex-lock"

    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
        try:
            with redis_lock(client, key, settings.reindex_lock_ttl):
                yield
        finally:
            client.close()

    return lock

"""The locks that keep index writers and re-indexes apart: per machine and across machines.

Used by the CLI and the workers alike, so they live in the core:

* :func:`writer_flock`: ``flock`` on ``index/.lock``, held by every index write
  (build, activate, add, remove, rollback, prune); a second writer waits for it.
* :func:`reindex_flock`: ``flock`` on ``index/.reindex.lock``, held for a whole
  re-index; a second re-index on this machine fails at once
  (:class:`~indexer.index.errors.ReindexRunning`) instead of repeating the work.
* :func:`redis_lock` (through :func:`reindex_lock_factory`): the same one-re-index
  rule for workers on several machines that share a Redis.

An ``flock`` dies with its process (closing the descriptor releases it), so a
killed worker never leaves one behind. The Redis lock (``SET key value NX PX
ttl``) cannot do that: its holder renews the expiry from a background thread
every third of ``ttl``; a holder that dies stops renewing, and the lock expires
``ttl`` seconds later. Its value names the holder (host, pid, start time) for the
message the loser records, and release deletes the key only if it still holds
this holder's value (compare and delete in one Lua script).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import redis

from indexer.config import Settings
from indexer.index.errors import IndexLockedError, ReindexRunning

log = logging.getLogger(__name__)

_BUSY = (errno.EAGAIN, errno.EACCES)  # what a non-blocking flock says when it is held


def _holder_note() -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} since {started}"


@contextlib.contextmanager
def writer_flock(path: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting for another holder.

    ``timeout``: seconds to wait (``None``: forever), then :class:`IndexLockedError`.
    A second descriptor conflicts even within one process.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = time.monotonic() + timeout
            while not _try_flock(fd):
                if time.monotonic() >= deadline:
                    raise IndexLockedError(
                        f"another process is writing the index in {path.parent} "
                        f"(waited {timeout:g}s for {path.name})"
                    )
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def reindex_flock(path: Path) -> Iterator[None]:
    """Hold ``path`` for a whole re-index, or raise :class:`ReindexRunning` at once.

    A re-index runs for minutes or hours; a second one started meanwhile (a beat
    tick, an API trigger) would only repeat the work, so it fails instead of
    queueing the way writers do. The file is separate from the writer lock, which
    the re-index takes for each write it makes, so other writers are not shut out
    for its whole length. While held, the file names its holder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_flock(fd):
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
            raise ReindexRunning(
                f"a re-index of {path.parent} is already running "
                f"({holder or 'holder unknown'}); not starting another"
            )
        # Who holds it, for the message above; cleared again before release.
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_note().encode("utf-8"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in _BUSY:
            raise
        return False
    return True


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
    holder = f"{_holder_note()} [{uuid.uuid4().hex}]"
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

"""indexer.locks: the writer and re-index flocks and the Redis re-index lock, across real
processes (a running Redis is needed; its absence fails the tests, never skips them)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import redis
from redis_support import own_prefix

from indexer.config import Settings
from indexer.index.errors import IndexLockedError, ReindexRunning
from indexer.index.store import IndexStore
from indexer.locks import redis_lock, reindex_flock, reindex_lock_factory, writer_flock

REDIS_URL = os.environ.get("LOOKALIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Takes the re-index lock through the store, says so, and holds it until stdin closes.
_HOLDER = textwrap.dedent(
    """
    import sys
    from indexer.index.store import IndexStore

    with IndexStore(sys.argv[1]).reindex_lock():
        print("locked", flush=True)
        sys.stdin.read()
    print("released", flush=True)
    """
)


@pytest.fixture
def store(tmp_path) -> IndexStore:
    return IndexStore(tmp_path / "index")


def _start_holder(store):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = holder.stdout.readline()
    if line.strip() != "locked":
        holder.kill()
        pytest.fail(f"lock holder did not start: {line!r} {holder.stderr.read()}")
    return holder


def _vectors(n: int, dim: int = 8):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.arange(1, n + 1, dtype=np.int64), vectors


def test_the_writer_lock_excludes_another_process(store):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"os.makedirs({str(store.root)!r}, exist_ok=True)\n"
            f"fd = os.open({str(store.root / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    data = _vectors(50)
    try:
        assert holder.stdout.readline().strip() == "locked"
        impatient = IndexStore(store.root, lock_timeout=0.2)
        with pytest.raises(IndexLockedError, match="another process"):
            impatient.build(*data, model_version="m1", n_shards=1)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert IndexStore(store.root, lock_timeout=0.2).build(*data, model_version="m1", n_shards=1)
    fd = os.open(store.root / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after the build
    finally:
        os.close(fd)


def test_the_writer_lock_waits_then_names_the_file(tmp_path):
    path = tmp_path / "index" / ".lock"
    with writer_flock(path):
        started = time.monotonic()
        with pytest.raises(IndexLockedError, match=r"waited 0.2s for \.lock"):
            with writer_flock(path, timeout=0.2):
                pytest.fail("entered a held writer lock")
        assert time.monotonic() - started >= 0.2
    with writer_flock(path, timeout=0):  # free again
        pass


def test_second_reindex_fails_at_once_while_another_process_runs(store):
    holder = _start_holder(store)
    try:
        started = time.monotonic()
        with pytest.raises(ReindexRunning, match=f"already running \\(pid {holder.pid} on "):
            with store.reindex_lock():
                pytest.fail("entered the re-index lock while another process held it")
        assert time.monotonic() - started < 1.0  # no waiting, unlike the writer lock
        # The writer lock is a different file: the running re-index can still write.
        version = IndexStore(store.root, lock_timeout=1).build(
            *_vectors(50), model_version="m1", n_shards=1, activate=True
        )
        assert store.current_version() == version
    finally:
        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        holder.wait(timeout=30)
    with store.reindex_lock():  # free again once the holder is done
        assert "pid" in (store.root / ".reindex.lock").read_text()
    assert (store.root / ".reindex.lock").read_text() == ""  # holder note cleared


def test_reindex_lock_dies_with_a_killed_holder(store):
    holder = _start_holder(store)
    try:
        with pytest.raises(ReindexRunning):
            with store.reindex_lock():
                pass
        holder.send_signal(signal.SIGKILL)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    with store.reindex_lock():
        pass


def test_reindex_lock_in_one_process(store):
    with store.reindex_lock():
        with pytest.raises(ReindexRunning):  # a second descriptor conflicts, even here
            with reindex_flock(store.root / ".reindex.lock"):
                pass
    with pytest.raises(RuntimeError, match="boom"):
        with store.reindex_lock():
            raise RuntimeError("boom")
    with store.reindex_lock():  # released by the exception
        pass
    assert not issubclass(ReindexRunning, IndexLockedError)  # give up, do not retry


def test_the_store_from_settings_locks_the_settings_index_dir(tmp_path):
    settings = Settings(home=tmp_path, _env_file=None)
    with IndexStore.from_settings(settings).reindex_lock():
        with pytest.raises(ReindexRunning):
            with IndexStore.from_settings(settings).reindex_lock():
                pass
    assert (tmp_path / "index" / ".reindex.lock").is_file()


HOLD_REDIS_LOCK = textwrap.dedent("""
    import sys, time, redis
    from indexer.locks import redis_lock
    client = redis.Redis.from_url(sys.argv[1])
    with redis_lock(client, sys.argv[2], ttl=float(sys.argv[3])):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def redis_key():
    """A unique key on the test Redis, deleted afterwards."""
    with own_prefix("lookalike-test-", REDIS_URL) as (_client, prefix):
        yield f"{prefix}reindex-lock"


def test_the_redis_lock_names_its_holder_is_renewed_and_expires_when_the_holder_dies(
    redis_key,
):
    client = redis.Redis.from_url(REDIS_URL)
    key = redis_key
    holder = subprocess.Popen([sys.executable, "-c", HOLD_REDIS_LOCK, REDIS_URL, key, "1.5"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(2.5)  # longer than the ttl: the holder renews it
        with pytest.raises(ReindexRunning, match=rf"pid {holder.pid} on .*Redis lock {key}"):
            with redis_lock(client, key, ttl=5):
                pass
        os.killpg(holder.pid, signal.SIGKILL)  # dies without releasing
        holder.wait(10)
        deadline = time.monotonic() + 5
        while client.exists(key):
            assert time.monotonic() < deadline, "the dead holder's lock never expired"
            time.sleep(0.1)
        with redis_lock(client, key, ttl=5):
            assert client.exists(key)
        assert not client.exists(key)  # released
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(10)


def test_the_lock_factory_uses_redis_only_when_redis_is_configured(tmp_path):
    def settings(**values):
        return Settings(home=tmp_path / "home", _env_file=None, **values)

    assert reindex_lock_factory(settings()) is None
    assert reindex_lock_factory(settings(broker_url="redis://x:1/0")) is not None
    assert reindex_lock_factory(settings(redis_url="redis://x:1/0")) is not None


def test_the_factory_lock_is_one_redis_key_per_prefix(tmp_path, redis_key):
    prefix = redis_key.removesuffix("reindex-lock")
    settings = Settings(home=tmp_path, redis_url=REDIS_URL, broker_key_prefix=prefix,
                        _env_file=None)
    lock = reindex_lock_factory(settings)
    client = redis.Redis.from_url(REDIS_URL)
    with lock():
        assert client.exists(redis_key)
        with pytest.raises(ReindexRunning, match="Redis lock"):
            with reindex_lock_factory(settings)():
                pass
    assert not client.exists(redis_key)
    client.close()

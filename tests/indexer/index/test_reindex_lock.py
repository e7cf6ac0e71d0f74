"""One re-index at a time: a non-blocking lock that fails fast, across real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from indexer.config import Settings
from indexer.index import store as store_module
from indexer.index.errors import IndexLockedError, ReindexRunning
from indexer.index.store import IndexStore

# Takes the re-index lock through the real API, says so, and holds it until stdin closes.
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


def test_second_reindex_fails_at_once_while_another_process_runs(store, synth):
    holder = _start_holder(store)
    try:
        started = time.monotonic()
        with pytest.raises(ReindexRunning, match=f"already running \\(pid {holder.pid} on "):
            with store.reindex_lock():
                pytest.fail("entered the re-index lock while another process held it")
        assert time.monotonic() - started < 1.0  # no waiting, unlike the writer lock
        # The writer lock is a different file: the running re-index can still write.
        ids, vectors = synth.random_ids(50), synth.clustered(50, 8)
        version = IndexStore(store.root, lock_timeout=1).build(
            ids, vectors, model_version="m1", n_shards=1, activate=True
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
            with IndexStore(store.root).reindex_lock():
                pass
    with pytest.raises(RuntimeError, match="boom"):
        with store.reindex_lock():
            raise RuntimeError("boom")
    with store.reindex_lock():  # released by the exception
        pass
    assert not issubclass(ReindexRunning, IndexLockedError)  # give up, do not retry


def test_module_api_reindex_lock(tmp_path):
    settings = Settings(home=tmp_path)
    with store_module.reindex_lock(settings=settings):
        with pytest.raises(ReindexRunning):
            with store_module.reindex_lock(settings=settings):
                pass
    assert (tmp_path / "index" / ".reindex.lock").is_file()

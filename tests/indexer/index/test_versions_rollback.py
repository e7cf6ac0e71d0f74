"""Index versions: activation history and rollback, and crashes between writing and switching."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from indexer.config import Settings
from indexer.index import versions as versions_module
from indexer.index.errors import IndexLockedError, NothingToRollBack
from indexer.index.searcher import ShardedSearcher
from indexer.index.store import IndexStore

DIM = 8


def _build(store, synth, n, *, seed=0, model="m1", activate=True):
    ids, vectors = synth.random_ids(n, seed=seed), synth.clustered(n, DIM, seed=seed)
    return store.build(ids, vectors, model_version=model, n_shards=2, activate=activate)


def test_repeated_rollbacks_walk_back_through_history(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 200)
    c = store.add(synth.random_ids(5, seed=9), synth.clustered(5, DIM, seed=9))  # incremental
    assert store.history() == [a, b, c]
    assert (store.root / "HISTORY").read_text() == f"{a}\n{b}\n{c}\n"

    assert store.rollback() == b
    assert store.current_version() == b and store.load().ntotal == 200
    assert store.rollback() == a  # further back, not to and fro between b and c
    assert store.current_version() == a and store.load().ntotal == 100
    with pytest.raises(NothingToRollBack, match=f"from {a}"):
        store.rollback()
    assert store.current_version() == a and store.history() == [a]
    assert store.list_versions() == [a, b, c]  # rolled-back versions stay on disk
    store.activate(c)  # ... so they can be brought back
    assert store.history() == [a, c] and store.rollback() == a


def test_activating_an_older_version_is_itself_rolled_back(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 200)
    c = _build(store, synth, 300)
    store.activate(a)
    store.activate(a)  # already current: nothing changes
    assert store.history() == [b, c, a]  # each version once, by latest activation
    assert (store.root / "HISTORY").read_text().split() == [b, c, a]
    assert store.rollback() == c
    assert store.rollback() == b  # never back to a, the version left first
    with pytest.raises(NothingToRollBack):
        store.rollback()


def test_nothing_to_roll_back(store, synth):
    with pytest.raises(NothingToRollBack, match="no index version is current"):
        store.rollback()
    a = _build(store, synth, 100, activate=False)
    assert store.history() == []
    with pytest.raises(NothingToRollBack):
        store.rollback()
    store.activate(a)
    with pytest.raises(NothingToRollBack, match="0 earlier activations"):
        store.rollback()
    assert store.current_version() == a


def test_rollback_skips_deleted_damaged_and_other_model_versions(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 110, model="m0")
    c = _build(store, synth, 120)
    d = _build(store, synth, 130)
    e = _build(store, synth, 140)
    shutil.rmtree(store.root / d)
    shard = store.root / c / "shard-01.faiss"
    shard.write_bytes(shard.read_bytes()[:-3])

    assert store.rollback(expected_model_version="m1") == a  # skips d, c and b
    assert store.current_version() == a and store.history() == [a]
    assert store.load(expected_model_version="m1").ntotal == 100

    store.activate(e)
    assert store.rollback() == a  # without a model given, every verified version counts
    store.activate(b)
    store.activate(e)
    assert store.history() == [a, b, e]
    with pytest.raises(NothingToRollBack, match="for model 'm9'"):
        store.rollback(expected_model_version="m9")
    assert store.current_version() == e and store.history() == [a, b, e]  # nothing changed


def test_crash_between_switch_and_history_is_harmless(store, synth, monkeypatch):
    a = _build(store, synth, 100)
    b = _build(store, synth, 200)
    # An activation that died after switching CURRENT, before recording it.
    versions_module.switch_current(store.root, a)
    assert (store.root / "HISTORY").read_text().split() == [a, b]
    assert store.history() == [b, a]
    assert store.rollback() == b

    # A rollback that died after recording the shorter history, before switching.
    c = _build(store, synth, 300)
    assert store.history() == [b, c]

    def crash(root, version):
        raise OSError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(versions_module, "switch_current", crash)
        with pytest.raises(OSError, match="power cut"):
            store.rollback()
    assert store.current_version() == c and store.load().ntotal == 300
    assert store.history() == [b, c]  # as if the rollback never happened
    assert store.rollback() == b


def test_rollback_waits_for_the_writer_lock(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 200)
    impatient = IndexStore(store.root, lock_timeout=0.1)
    with store.writer_lock():  # flock: a second descriptor conflicts even in-process
        with pytest.raises(IndexLockedError):
            impatient.rollback()
    assert store.current_version() == b
    assert impatient.rollback() == a


# The child builds a version and stops at a chosen point, holding the writer lock,
# until the parent kills it with SIGKILL: no cleanup code of the child runs.
_CRASHING_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import importlib
    from indexer.index.store import IndexStore

    root, module, hook = sys.argv[1], sys.argv[2], sys.argv[3]

    def stop_here(*args, **kwargs):
        print("ready", flush=True)
        time.sleep(600)

    setattr(importlib.import_module(module), hook, stop_here)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((150, {dim})).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10_000, 10_150, dtype=np.int64)
    IndexStore(root).build(ids, vectors, model_version="m1", n_shards=2, activate=True)
    print("not killed", flush=True)
    """
).format(dim=DIM)


@pytest.mark.parametrize(
    ("module", "hook"),
    [
        # the new version is complete (manifest and all) but not current
        ("indexer.index.versions", "switch_current"),
        # every shard is written, the manifest is not
        ("indexer.index.writer", "write_manifest"),
    ],
)
def test_killed_between_writing_a_version_and_switching_to_it(store, synth, module, hook):
    old = _build(store, synth, 100)
    queries = synth.clustered(10, DIM, seed=0)
    with ShardedSearcher(store.load()) as searcher:
        before = searcher.search(queries, 3)[1]

    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_CHILD, str(store.root), module, hook],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read() if child.poll() is not None else line
        orphans = [p.name for p in store.root.iterdir() if p.is_dir() and p.name != old]
        assert len(orphans) == 1
        orphan = orphans[0]
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    # CURRENT still names the old version, which loads, verifies and answers as before.
    assert store.current_version() == old and store.history() == [old]
    store.verify(old)
    loaded = store.load()
    assert loaded.version == old and loaded.ntotal == 100
    with ShardedSearcher(loaded) as searcher:
        assert (searcher.search(queries, 3)[1] == before).all()
    # The orphan is not served, and is not something to roll back to.
    complete = hook == "switch_current"
    assert (store.root / orphan / "manifest.json").is_file() == complete
    assert store.list_versions() == ([old, orphan] if complete else [old])
    with pytest.raises(NothingToRollBack):
        store.rollback()

    # The kill released the writer lock: a later build works and becomes current.
    later = IndexStore(store.root, lock_timeout=5)
    new = _build(later, synth, 200, seed=1)
    assert later.current_version() == new and later.load().ntotal == 200
    assert later.history() == [old, new]

    assert later.prune(keep=2) == [orphan]
    assert not (store.root / orphan).exists()
    assert later.list_versions() == [old, new]
    assert later.rollback() == old and later.load().ntotal == 100


def test_rollback_and_history_of_the_settings_store(tmp_path, synth):
    settings = Settings(home=tmp_path, shards=2, _env_file=None)
    ids, vectors = synth.random_ids(60), synth.clustered(60, DIM)
    a = IndexStore.from_settings(settings).build(ids, vectors, model_version="m1", activate=True)
    b = IndexStore.from_settings(settings).build(
        ids[:30], vectors[:30], model_version="m1", activate=True
    )
    store = IndexStore.from_settings(settings)  # another process's view: files only
    assert store.history() == [a, b]
    assert store.rollback(expected_model_version="m1") == a
    assert IndexStore.from_settings(settings).current_version() == a
    with pytest.raises(NothingToRollBack):
        store.rollback()
    assert IndexStore.from_settings(settings).load().ntotal == 60


def test_history_trouble_never_undoes_a_switch(store, synth, monkeypatch):
    a = _build(store, synth, 100)

    def disk_full(versions):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(store, "_write_history", disk_full)
        b = _build(store, synth, 200)  # the build and the switch stand
    assert store.current_version() == b
    assert (store.root / "HISTORY").read_text().split() == [a]
    assert store.history() == [a, b]
    with open(store.root / "HISTORY", "a") as handle:  # lines that are no version are ignored
        handle.write("not-a-version\n\n")
    assert store.history() == [a, b]
    assert store.rollback() == a

"""Index versions: pruning old ones (what is kept, what goes; hard-linked shards survive)."""

from __future__ import annotations

import os

import pytest

from indexer.config import Settings
from indexer.index.errors import IndexLockedError, NothingToRollBack
from indexer.index.searcher import ShardedSearcher
from indexer.index.store import IndexStore

DIM = 8


def _build(store, synth, n, *, seed=0, activate=True, n_shards=2):
    ids, vectors = synth.random_ids(n, seed=seed), synth.clustered(n, DIM, seed=seed)
    return store.build(ids, vectors, model_version="m1", n_shards=n_shards, activate=activate)


def test_prune_keeps_the_current_and_most_recently_activated(store, synth):
    a, b, c, d = (_build(store, synth, 100 + i) for i in range(4))
    store.activate(b)
    store.activate(d)
    assert store.history() == [a, c, b, d]  # by latest activation, not by name
    assert store.prune(keep=2) == [a, c]
    assert store.list_versions() == [b, d]
    assert store.history() == [b, d]  # entries of deleted versions dropped
    assert store.load().ntotal == 103
    assert store.rollback() == b
    with pytest.raises(NothingToRollBack):
        store.rollback()
    assert store.prune(keep=1) == []  # d, rolled back from, is newer than current b: kept
    assert store.list_versions() == [b, d]


def test_prune_keep_one_never_deletes_the_current_version(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 101)
    c = _build(store, synth, 102)
    store.activate(a)  # current is the oldest by name
    assert store.prune(keep=1) == [b, c]
    assert store.list_versions() == [a] and store.current_version() == a
    assert store.load().ntotal == 100
    assert store.prune(keep=1) == []


def test_rolled_back_version_is_pruned_once_superseded(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 101)
    assert store.rollback() == a
    assert store.prune(keep=5) == []  # b may yet be activated again
    c = _build(store, synth, 102)
    assert store.prune(keep=5) == [b]  # never re-activated, older than current c
    assert store.list_versions() == [a, c] and store.history() == [a, c]


def test_deleting_old_versions_keeps_hard_linked_shards_of_newer_ones(store, synth):
    ids, vectors = synth.random_ids(600), synth.clustered(600, DIM)
    base = store.build(ids, vectors, model_version="m1", n_shards=3, activate=True)
    extra_id = int(ids.max()) + 1
    extra_id += (1 - extra_id % 3) % 3  # lands in shard 1: shards 0 and 2 are hard links
    added = store.add([extra_id], -vectors[:1])
    removed = store.remove(ids[:1])  # shard of ids[0]; the others are still base's files
    newest = store.root / removed
    links_before = {p.name: os.stat(p).st_nlink for p in newest.glob("shard-*.faiss")}
    assert max(links_before.values()) > 1  # some shard files really are shared
    shared = [
        name
        for name in links_before
        if os.stat(store.root / base / name).st_ino == os.stat(newest / name).st_ino
    ]
    assert shared  # at least one of the newest version's files is base's very file

    assert store.prune(keep=1) == [base, added]
    assert store.list_versions() == [removed]
    for path in newest.glob("shard-*.faiss"):
        assert os.stat(path).st_nlink == 1  # the last link left, the data intact
    store.verify(removed)  # sizes and sha256 of every shard still match
    loaded = store.load()
    assert loaded.ntotal == 600  # 600 + 1 added - 1 removed
    with ShardedSearcher(loaded) as searcher:
        _, found = searcher.search(vectors[1:20], 1)
    assert (found[:, 0] == ids[1:20]).all()
    with ShardedSearcher(loaded) as searcher:
        assert searcher.search(-vectors[:1], 1)[1][0, 0] == extra_id


def test_prune_removes_crash_leftovers_but_not_versions_that_may_be_activated(store, synth):
    old = _build(store, synth, 100)
    never_old = _build(store, synth, 101, activate=False)  # older than current below
    current = _build(store, synth, 102)
    newer_pending = _build(store, synth, 103, activate=False)  # newer: may yet go live
    half_new = store.root / "29991231T235959.999999Z-dead"  # half-written, no manifest
    half_new.mkdir()
    (half_new / "shard-00.faiss").write_bytes(b"partial")
    half_deleted = store.root / f".{old}.pruning"  # a prune that died mid-delete
    half_deleted.mkdir()
    (half_deleted / "shard-00.faiss").write_bytes(b"x")
    stale_tmp = store.root / ".CURRENT.abc123.tmp"
    stale_tmp.write_text(half_new.name)
    unrelated = [store.root / "maps", store.root / "README.txt"]
    unrelated[0].mkdir()
    unrelated[1].write_text("not ours")

    assert store.prune(keep=2) == [never_old, half_new.name]
    assert store.list_versions() == [old, current, newer_pending]
    assert not half_new.exists() and not half_deleted.exists() and not stale_tmp.exists()
    assert all(path.exists() for path in unrelated)
    assert store.current_version() == current and store.history() == [old, current]
    store.activate(newer_pending)
    assert store.prune(keep=2) == [old]


def test_prune_without_a_current_version_only_removes_half_written(store, synth):
    a = _build(store, synth, 100, activate=False)
    half = store.root / "20000101T000000.000000Z-0bad"
    half.mkdir()
    assert store.prune() == [half.name]
    assert store.list_versions() == [a] and store.current_version() is None
    assert not (store.root / "HISTORY").exists()


@pytest.mark.parametrize("keep", [0, -1, 1.5, True, "2"])
def test_prune_refuses_a_bad_keep(store, keep):
    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        store.prune(keep=keep)


def test_prune_waits_for_the_writer_lock(store, synth):
    a = _build(store, synth, 100)
    b = _build(store, synth, 101)
    impatient = IndexStore(store.root, lock_timeout=0.1)
    with store.writer_lock():  # a writer (build, add, activate) is at work
        with pytest.raises(IndexLockedError):
            impatient.prune(keep=1)
    assert store.list_versions() == [a, b]
    assert impatient.prune(keep=1) == [a]


def test_prune_of_the_settings_store(tmp_path, synth):
    settings = Settings(home=tmp_path, shards=2, _env_file=None)
    ids, vectors = synth.random_ids(50), synth.clustered(50, DIM)
    versions = [
        IndexStore.from_settings(settings).build(ids, vectors, model_version="m1", activate=True)
        for _ in range(3)
    ]
    assert IndexStore.from_settings(settings).prune(2) == versions[:1]
    assert IndexStore.from_settings(settings).list_versions() == versions[1:]

"""IndexWriter on a full disk (a real, small tmpfs): builds and copy-on-write adds fail
cleanly, naming the full disk, and leave the current version serving untouched."""

from __future__ import annotations

import errno

import numpy as np
import pytest
from small_filesystem import fill, small_filesystem

from indexer.index.errors import IndexDiskFullError
from indexer.index.searcher import ShardedSearcher
from indexer.index.store import IndexStore

LOCK_FILES = {"CURRENT", "HISTORY", ".lock"}


@pytest.fixture
def small_store(tmp_path):
    with small_filesystem(tmp_path / "index", 1 << 20) as root:
        yield IndexStore(root)


def _top1(store: IndexStore, queries: np.ndarray) -> np.ndarray:
    with ShardedSearcher(store.load()) as searcher:
        return searcher.search(queries, 1)[1][:, 0]


@pytest.mark.parametrize("write", ["build", "add"])
def test_disk_full_while_writing_an_index_version_leaves_the_current_one_serving(
    small_store, synth, write
):
    store = small_store
    ids, vectors = synth.random_ids(2_000), synth.clustered(2_000, 16)
    live = store.build(ids, vectors, model_version="m1", n_shards=3, activate=True)
    assert (_top1(store, vectors[:50]) == ids[:50]).all()
    ballast = fill(store.root, leave=4096)
    more_ids, more = synth.random_ids(500, seed=9), synth.clustered(500, 16, seed=9)

    with pytest.raises(IndexDiskFullError) as raised:
        if write == "build":
            store.build(more_ids, more, model_version="m1", n_shards=3, activate=True)
        else:
            store.add(more_ids, more, expected_model_version="m1")
    assert raised.value.__cause__.errno == errno.ENOSPC
    message = str(raised.value)
    assert "disk full" in message and str(store.root) in message
    assert f"{live} stays current" in message
    assert store.current_version() == live and store.list_versions() == [live]
    assert {p.name for p in store.root.iterdir()} == LOCK_FILES | {live, ballast.name}
    assert (_top1(store, vectors[:50]) == ids[:50]).all()  # still serving, all of it
    assert store.load().ntotal == 2_000

    ballast.unlink()
    if write == "build":
        version = store.build(more_ids, more, model_version="m1", n_shards=3, activate=True)
        assert store.load().ntotal == 500
    else:
        version = store.add(more_ids, more, expected_model_version="m1")
        assert store.load().ntotal == 2_500
    assert store.current_version() == version != live
    assert (_top1(store, more[:50]) == more_ids[:50]).all()


def test_discard_deletes_a_version_never_made_current_and_never_the_current_one(store, data):
    ids, vectors = data
    live = store.build(ids, vectors, model_version="m1", activate=True)
    spare = store.build(ids, vectors, model_version="m1")
    assert store.discard(live) is False and store.current_version() == live
    assert store.discard(spare) is True
    assert store.list_versions() == [live] and not (store.root / spare).exists()
    assert store.discard(spare) is False  # gone already

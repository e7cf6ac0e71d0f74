"""Writing versions: manifests, builds that fail cleanly, copy-on-write adds and removes."""

from __future__ import annotations

import json
import os
from datetime import datetime

import numpy as np
import pytest

from indexer.fsutil import sha256_file
from indexer.index import versions as versions_module
from indexer.index.errors import IndexBuildError, IndexLockedError, IndexNotFoundError
from indexer.index.searcher import ShardedSearcher
from indexer.index.store import IndexStore

DIM = 16  # the dimension of the conftest's ``data``


def _top1(store, queries, version=None):
    with ShardedSearcher(store.load(version)) as searcher:
        return searcher.search(queries, 1)[1][:, 0]


def test_manifest_records_what_a_reader_needs(store, data, built):
    version = built(data)
    manifest = json.loads((store.root / version / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["version"] == version
    assert manifest["model_version"] == "m1"
    assert manifest["dim"] == DIM
    assert manifest["metric"] == "inner_product"
    assert manifest["factory"] == "IDMap2,Flat" and manifest["index_type"] == "flat"
    assert manifest["nlist"] == 0 and manifest["default_nprobe"] == 0
    assert manifest["n_shards"] == 3 and len(manifest["shards"]) == 3
    assert manifest["total"] == 2_000 == sum(s["count"] for s in manifest["shards"])
    ids = data[0]
    for shard, entry in enumerate(manifest["shards"]):
        path = store.root / version / entry["file"]
        assert entry["file"] == f"shard-{shard:02d}.faiss"
        assert entry["count"] == int((ids % 3 == shard).sum())
        assert entry["sha256"] == sha256_file(path) and entry["bytes"] == path.stat().st_size
    created = datetime.fromisoformat(manifest["created"].replace("Z", "+00:00"))
    assert created.utcoffset().total_seconds() == 0



def test_ivf_manifest_has_nlist_and_default_nprobe(store, synth):
    ids, vectors = synth.random_ids(4_000), synth.clustered(4_000, DIM)
    version = store.build(ids, vectors, model_version="m1", n_shards=1, flat_threshold=1_000)
    manifest = store.manifest(version)
    assert manifest.factory == f"IVF{manifest.nlist},SQfp16" and manifest.nlist == 64
    assert manifest.default_nprobe == 16 and "sqrt(nlist)" in manifest.nprobe_rule



def test_crash_before_switching_current_keeps_old_version(
    store, data, monkeypatch, synth, built
):
    old = built(data)
    queries = data[1][:20]
    before = _top1(store, queries)

    def crash(root, version):
        raise OSError("power cut")

    monkeypatch.setattr(versions_module, "switch_current", crash)
    new_ids = synth.random_ids(20, seed=7)
    with pytest.raises(OSError, match="power cut"):
        store.add(new_ids, queries)  # would become the top hit of every query
    assert store.current_version() == old
    assert (_top1(store, queries) == before).all()



def test_failed_build_leaves_no_version(store, synth):
    ids, vectors = synth.random_ids(50), synth.clustered(50, DIM)
    with pytest.raises(IndexBuildError, match="too few to train"):
        store.build(ids, vectors, model_version="m1", n_shards=1, factory="IVF64,Flat")
    assert store.list_versions() == [] and [p.name for p in store.root.iterdir()] == [".lock"]
    with pytest.raises(ValueError, match="unique"):
        store.build(np.array([1, 1]), vectors[:2], model_version="m1", n_shards=1)



def test_incremental_add_replaces_and_reuses_unchanged_shards(store, data, built):
    ids, vectors = data
    old = built(data)
    # Pick a new id that lands in shard 1 of 3, and a query near nothing in particular.
    new_id = int(ids.max()) + 1
    new_id += (1 - new_id % 3) % 3
    probe = -vectors[:1]  # far from its own source point
    new = store.add(np.array([new_id]), probe)
    assert store.current_version() == new and store.manifest(new).parent == old
    assert _top1(store, probe)[0] == new_id
    assert store.load().ntotal == 2_001

    old_dir, new_dir = store.root / old, store.root / new
    for shard in (0, 2):  # untouched: the very same file (hard link)
        name = f"shard-{shard:02d}.faiss"
        assert os.stat(old_dir / name).st_ino == os.stat(new_dir / name).st_ino
    assert os.stat(old_dir / "shard-01.faiss").st_ino != os.stat(new_dir / "shard-01.faiss").st_ino
    assert store.load(old).ntotal == 2_000  # the old version is untouched

    # Re-adding an existing id replaces its vector: no duplicate.
    store.add(np.array([new_id]), vectors[5:6])
    loaded = store.load()
    assert loaded.ntotal == 2_001
    with ShardedSearcher(loaded) as searcher:
        _, found = searcher.search(vectors[5:6], 3)
    assert sorted(found[0, :2].tolist()) == sorted([new_id, int(ids[5])])
    assert len(set(found[0].tolist())) == 3



def test_incremental_remove(store, data, built):
    ids, vectors = data
    built(data)
    assert _top1(store, vectors[:3]).tolist() == ids[:3].tolist()
    version = store.remove(ids[:3])
    assert store.load().ntotal == 1_997
    assert not set(_top1(store, vectors[:3]).tolist()) & set(ids[:3].tolist())
    assert store.remove(ids[:3]) == version  # nothing left to remove: no new version
    assert len(store.list_versions()) == 2



def test_incremental_update_of_ivf_index_needs_no_retraining(store, synth):
    ids, vectors = synth.random_ids(4_000), synth.clustered(4_000, DIM)
    store.build(ids, vectors, model_version="m1", n_shards=2, flat_threshold=500, activate=True)
    extra_ids, extra = synth.random_ids(50, seed=3), synth.clustered(50, DIM, seed=3)
    store.add(extra_ids, extra)
    loaded = store.load()
    assert loaded.ntotal == 4_050 and loaded.manifest.index_type == "ivf_sq"
    with ShardedSearcher(loaded) as searcher:
        _, found = searcher.search(extra, 1, nprobe=loaded.nlist)
    assert (found[:, 0] == extra_ids).all()
    store.remove(extra_ids)
    assert store.load().ntotal == 4_000



def test_an_add_of_another_dimension_or_model_is_refused(store, data, built):
    built(data)
    with pytest.raises(ValueError, match="dimension"):
        store.add(np.array([1]), np.ones((1, 32), np.float32))
    with pytest.raises(IndexBuildError, match="not 'm2'"):
        store.add(np.array([1]), np.ones((1, DIM), np.float32), expected_model_version="m2")



def test_add_before_any_build_is_refused(store):
    with pytest.raises(IndexNotFoundError, match="build one first"):
        store.add(np.array([1]), np.ones((1, DIM), np.float32))


def test_activate_without_switches_to_the_build_minus_what_is_gone_asked_under_the_lock(
    store, data, built
):
    ids, vectors = data
    live = built(data)
    rebuilt = store.build(ids, vectors, model_version="m1", n_shards=3)  # not current yet
    asked = []

    def gone():
        # A delete's index change waits for this lock, so it cannot slip in between.
        with pytest.raises(IndexLockedError):
            with IndexStore(store.root, lock_timeout=0.05).writer_lock():
                pass
        asked.append(True)
        return ids[:3]

    current = store.activate_without(rebuilt, gone)
    assert asked and current not in (live, rebuilt)  # a child of the rebuilt version
    assert store.current_version() == current and store.manifest(current).parent == rebuilt
    assert store.manifest(current).total == len(ids) - 3
    assert not set(_top1(store, vectors[:3]).tolist()) & set(ids[:3].tolist())
    # Nothing gone: the build itself becomes current, verified.
    again = store.build(ids, vectors, model_version="m1", n_shards=3)
    assert store.activate_without(again, lambda: np.empty(0, dtype=np.int64)) == again
    assert store.current_version() == again


@pytest.mark.parametrize(("kind", "options"), [
    ("flat", {}),
    ("ivf_sq", {"flat_threshold": 1_000}),
    ("ivf_pq", {"flat_threshold": 1_000, "pq_threshold": 2_000}),
    ("ivf_sq", {"flat_threshold": 1_000, "hnsw_nlist": 64}),  # an HNSW graph assigns lists
    ("ivf_pq", {"flat_threshold": 1_000, "pq_threshold": 2_000, "hnsw_nlist": 64}),
])
def test_every_type_auto_picks_adds_replaces_and_removes_in_place(store, synth, kind, options):
    """Each kind 'auto' can choose, projected to ``index_dim`` where it is an IVF index,
    takes new vectors, replaces a changed one and forgets removed ones without a rebuild;
    a filtered search sees the same, and so does a reader that maps the files."""
    dim, n = 64, 6_000
    ids, vectors = synth.random_ids(n + 20), synth.clustered(n + 20, dim)
    store.build(ids[:n], vectors[:n], model_version="m1", n_shards=2, index_dim=16,
                activate=True, **options)  # fmt: skip
    manifest = store.manifest(store.require_current())
    assert manifest.index_type == kind and manifest.dim == dim
    assert "PCA16,L2norm," in manifest.factory  # every kind holds the compact vectors
    assert ("_HNSW32," in manifest.factory) == ("hnsw_nlist" in options)

    store.add(ids[n:], vectors[n:])  # 20 new items
    store.add(ids[:1], vectors[n + 19 : n + 20])  # item 0's photo changed
    store.remove(ids[1:3])
    loaded = store.load()  # memory-mapped shards, as every searcher reads them
    assert loaded.ntotal == n + 20 - 2
    with ShardedSearcher(loaded) as searcher:
        new_found = searcher.search(vectors[n : n + 10], 1, nprobe=loaded.nlist or None)[1]
        changed = searcher.search(vectors[n + 19 : n + 20], 2, nprobe=loaded.nlist or None)[1]
        within = searcher.search(vectors[1:3], 5, within=ids[:4])[1]
    assert (new_found[:, 0] == ids[n : n + 10]).all()
    assert set(changed[0].tolist()) == {int(ids[0]), int(ids[n + 19])}  # the same photo twice
    assert not np.isin(ids[1:3], within).any()
    assert set(within[within >= 0].tolist()) == {int(ids[0]), int(ids[3])}

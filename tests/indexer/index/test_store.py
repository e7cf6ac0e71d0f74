"""The IndexStore facade: one object over versions, writes and the re-index lock."""

from __future__ import annotations

import numpy as np

from indexer.config import Settings
from indexer.index.store import IndexStore
from indexer.index.writer import BuildOptions

DIM = 16


def test_from_settings_builds_with_the_settings_shards_and_index_choice(tmp_path, synth):
    settings = Settings(home=tmp_path, shards=2, flat_threshold=10, _env_file=None)
    ids, vectors = synth.random_ids(2_000), synth.clustered(2_000, DIM)
    store = IndexStore.from_settings(settings)
    assert store.writer.defaults == BuildOptions(n_shards=2, flat_threshold=10)
    version = store.build(ids, vectors, model_version="m1", activate=True)
    assert store.current_version() == version
    manifest = store.load().manifest
    assert manifest.n_shards == 2 and manifest.index_type == "ivf_sq"
    assert (tmp_path / "index" / version / "manifest.json").is_file()
    assert store.list_versions() == [version]
    # What a caller gives wins over the settings.
    flat = store.build(ids, vectors, model_version="m1", n_shards=3, factory="Flat")
    assert store.manifest(flat).n_shards == 3 and store.manifest(flat).index_type == "flat"
    assert store.current_version() == version  # not activated


def test_a_store_without_settings_builds_one_exact_shard(tmp_path, synth):
    store = IndexStore(tmp_path / "index")
    ids, vectors = synth.random_ids(100), synth.clustered(100, DIM)
    version = store.build(ids, vectors, model_version="m1", activate=True)
    manifest = store.manifest(version)
    assert manifest.n_shards == 1 and manifest.factory == "IDMap2,Flat"
    # Writes through the facade switch CURRENT like activate does, and land in HISTORY.
    added = store.add(np.array([7], dtype=np.int64), vectors[:1])
    removed = store.remove(np.array([7], dtype=np.int64))
    assert store.history() == [version, added, removed]
    assert store.load().ntotal == 100

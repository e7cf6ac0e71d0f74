"""Index versions: CURRENT, activation, verification on load, half-written versions."""

from __future__ import annotations

import pytest

from indexer.index.errors import IndexLoadError, IndexNotFoundError

DIM = 16  # the dimension of the conftest's ``data``


def test_current_is_switched_only_by_activate(store, data):
    ids, vectors = data
    assert store.current_version() is None
    with pytest.raises(IndexNotFoundError, match="build one first"):
        store.load()
    first = store.build(ids, vectors, model_version="m1", n_shards=2)
    assert store.current_version() is None
    store.activate(first)
    assert (store.root / "CURRENT").read_text() == first + "\n"
    second = store.build(ids[:100], vectors[:100], model_version="m1", n_shards=2)
    assert store.current_version() == first
    store.activate(second)
    assert store.current_version() == second and store.load().ntotal == 100
    store.activate(first)  # rollback
    assert store.load().ntotal == 2_000
    assert store.list_versions() == sorted([first, second])
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(IndexNotFoundError):
        store.activate("20991231T000000.000000Z-0000")



@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_shard_is_refused_and_previous_version_still_loads(store, data, damage, built):
    good = built(data)
    bad = built((data[0][:1_000], data[1][:1_000]))
    path = store.root / bad / "shard-01.faiss"
    if damage == "flip":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-7])
    else:
        path.unlink()
    with pytest.raises(IndexLoadError, match=f"shard-01.faiss of index version {bad}"):
        store.load()
    with pytest.raises(IndexLoadError, match="shard-01.faiss"):
        store.activate(bad)
    assert store.load(good).ntotal == 2_000
    store.activate(good)
    assert store.load().ntotal == 2_000



def test_mismatched_model_version_or_dim_is_refused(store, data, built):
    built(data)
    with pytest.raises(IndexLoadError, match="built for model 'm1', expected 'm2'"):
        store.load(expected_model_version="m2")
    with pytest.raises(IndexLoadError, match="dimension 16, expected 32"):
        store.load(expected_dim=32)
    assert store.load(expected_model_version="m1", expected_dim=DIM).ntotal == 2_000



def test_half_written_version_without_manifest_is_ignored(store, data, built):
    old = built(data)
    half = store.root / "29991231T235959.999999Z-dead"
    half.mkdir()
    (half / "shard-00.faiss").write_bytes(b"partial")
    (store.root / ".CURRENT.abc.tmp").write_text(half.name)
    assert store.list_versions() == [old]
    assert store.current_version() == old
    assert store.load().ntotal == 2_000
    with pytest.raises(IndexLoadError, match="no manifest.json"):
        store.load(half.name)
    with pytest.raises(IndexLoadError):
        store.activate(half.name)


def test_a_loaded_version_maps_its_shards_instead_of_copying_them(store, synth):
    """The searchers of every API process share one copy of a version's codes: the
    shard files are memory-mapped (they show in this process's mappings)."""
    from pathlib import Path

    import faiss
    import numpy as np

    version = store.build(synth.random_ids(3_000), synth.clustered(3_000, 16), model_version="m1",
                          n_shards=2, flat_threshold=1_000)
    loaded = store.load(version)
    mapped = Path("/proc/self/maps").read_text()
    files = [store.version_dir(version) / entry.file for entry in loaded.manifest.shards]
    assert all(str(path.resolve()) in mapped for path in files)
    queries = synth.clustered(3, 16, seed=5)
    scores, _ = loaded.shards[0].search(queries, 3)
    again = faiss.read_index(str(files[0]))  # an ordinary copy gives the same answers
    np.testing.assert_allclose(scores, again.search(queries, 3)[0], rtol=1e-6)

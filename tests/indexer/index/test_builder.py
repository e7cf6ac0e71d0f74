"""Building shards from inputs larger than memory: memory-mapped vectors, chunked adds,
no whole copy of the input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from indexer.index import builder


def _memmap(path, array):
    np.save(path, array)
    return np.load(path, mmap_mode="r")


def _hashes(store, version):
    return [shard.sha256 for shard in store.manifest(version).shards]


@pytest.mark.parametrize("n_shards", [1, 2])
def test_a_build_from_a_memory_mapped_file_equals_one_from_memory(
    store, synth, tmp_path, monkeypatch, n_shards
):
    ids, vectors = synth.random_ids(6_000), synth.clustered(6_000, 32)
    options = {"model_version": "m1", "n_shards": n_shards, "flat_threshold": 1_000}
    in_memory = store.build(ids, vectors, **options)
    mapped = store.build(ids, _memmap(tmp_path / "base.npy", vectors), **options)
    monkeypatch.setattr(builder, "ADD_ROWS", 777)  # many chunks, the last one short
    chunked = store.build(ids, vectors, **options)
    assert store.manifest(in_memory).index_type == "ivf_sq"
    assert _hashes(store, mapped) == _hashes(store, in_memory)
    assert _hashes(store, chunked) == _hashes(store, in_memory)


@pytest.mark.parametrize("n_shards", [1, 2])
def test_building_and_adding_copy_at_most_a_chunk_of_a_mapped_input(
    store, synth, tmp_path, monkeypatch, n_shards
):
    """numpy allocations (tracemalloc sees them; faiss's own memory it does not) stay
    well below the input's size: no shard, dedup or dtype copy of the whole of it."""
    n, dim = 40_000, 64  # 10 MB of vectors
    monkeypatch.setattr(builder, "ADD_ROWS", 2_048)
    monkeypatch.setattr(builder, "_CHECK_ROWS", 2_048)
    ids = synth.random_ids(2 * n)
    base = _memmap(tmp_path / "base.npy", synth.clustered(n, dim))
    extra = _memmap(tmp_path / "extra.npy", synth.clustered(n, dim, seed=5))
    tracemalloc.start()
    try:
        store.build(
            ids[:n],
            base,
            model_version="m1",
            n_shards=n_shards,
            factory="IVF64,SQfp16",
            activate=True,
        )  # trains on 64 x 64 points
        build_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        store.add(ids[n:], extra)
        add_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert store.load().ntotal == 2 * n
    assert build_peak < base.nbytes / 4, f"build peak {build_peak:,} B of {base.nbytes:,}"
    assert add_peak < extra.nbytes / 4, f"add peak {add_peak:,} B of {extra.nbytes:,}"

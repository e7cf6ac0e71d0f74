"""Shard routing by id and verified shard files."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.fsutil import sha256_file
from indexer.index.errors import IndexLoadError
from indexer.index.manifest import ShardEntry
from indexer.index.shards import check_ids, read_shard, shard_of, split_by_shard, write_shard


def test_split_by_shard_partitions_rows_by_id_modulo(synth):
    ids = synth.random_ids(10_000)
    parts = split_by_shard(ids, 4)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(ids)))
    for shard, rows in enumerate(parts):
        assert (ids[rows] % 4 == shard).all()
        assert abs(len(rows) - 2_500) < 200  # hashed ids spread evenly
    assert (shard_of(np.array([0, 5, 6, 7]), 3) == [0, 2, 0, 1]).all()


def test_check_ids_rejects_negative_and_non_integer_ids():
    with pytest.raises(ValueError, match="non-negative"):
        check_ids(np.array([1, -2]))
    with pytest.raises(ValueError, match="integers"):
        check_ids(np.array([1.5]))


def _written_shard(tmp_path, synth):
    index = faiss.index_factory(16, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add_with_ids(synth.clustered(300, 16), synth.random_ids(300))
    path = tmp_path / "shard-00.faiss"
    size, digest = write_shard(index, path)
    return path, ShardEntry(path.name, 300, size, digest)


def test_write_shard_hashes_while_writing_and_reads_back(tmp_path, synth):
    path, entry = _written_shard(tmp_path, synth)
    assert entry.bytes == path.stat().st_size and entry.sha256 == sha256_file(path)
    assert [p.name for p in tmp_path.iterdir()] == ["shard-00.faiss"]  # no temp left
    assert read_shard(path, entry, version="v", dim=16).ntotal == 300


def test_read_shard_refuses_flipped_truncated_missing_and_mismatched(tmp_path, synth):
    path, entry = _written_shard(tmp_path, synth)
    good = path.read_bytes()

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(IndexLoadError, match="shard-00.faiss.*checksum"):
        read_shard(path, entry, version="v", dim=16)

    path.write_bytes(good[:-10])
    with pytest.raises(IndexLoadError, match="shard-00.faiss.*truncated"):
        read_shard(path, entry, version="v", dim=16)

    path.write_bytes(good)
    with pytest.raises(IndexLoadError, match="dimension 16"):
        read_shard(path, entry, version="v", dim=32)

    path.unlink()
    with pytest.raises(IndexLoadError, match="shard-00.faiss.*missing"):
        read_shard(path, entry, version="v", dim=16)

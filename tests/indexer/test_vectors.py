"""Vector store: append-only parts, latest wins, tombstones, damage is never data."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from indexer.vectors import VectorStore, VectorStoreError

DIM = 8


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture
def store(tmp_path) -> VectorStore:
    return VectorStore(tmp_path / "vectors", "m1", DIM)


def test_nothing_is_created_until_the_first_write(tmp_path, store):
    assert not (tmp_path / "vectors").exists()
    ids, vectors = store.load()
    assert ids.shape == (0,) and vectors.shape == (0, DIM) and store.count() == 0
    store.append(np.array([3, 1]), _vectors(2))
    meta = json.loads((tmp_path / "vectors" / "m1" / "meta.json").read_text())
    assert meta == {"format": 1, "model_version": "m1", "dim": DIM}
    assert (tmp_path / "vectors" / "m1" / "part-000001.npz").is_file()


def test_latest_part_wins_and_tombstones_apply(store):
    first, second = _vectors(5, 1), _vectors(2, 2)
    store.append(np.arange(5), first)
    store.append(np.array([1, 7]), second)  # id 1 re-embedded, id 7 new
    store.delete(np.array([2, 99]))  # 99 was never there
    store.delete(np.array([7]))
    store.append(np.array([7]), first[:1])  # re-added after its tombstone
    ids, vectors = store.load()
    assert ids.tolist() == [0, 1, 3, 4, 7]
    expected = {0: first[0], 1: second[0], 3: first[3], 4: first[4], 7: first[0]}
    for i, vector in zip(ids, vectors, strict=True):
        np.testing.assert_array_equal(vector, expected[int(i)])
    assert store.count() == 5 and store.ids().tolist() == ids.tolist()
    assert [p.kind for p in store.iter_parts()] == [
        "append",
        "append",
        "delete",
        "delete",
        "append",
    ]
    assert [p.seq for p in store.iter_parts(vectors=False)] == [1, 2, 3, 4, 5]


def test_duplicate_ids_within_one_append_keep_the_last(store):
    vectors = _vectors(3)
    store.append(np.array([4, 4, 5]), vectors)
    ids, loaded = store.load()
    assert ids.tolist() == [4, 5]
    np.testing.assert_array_equal(loaded[0], vectors[1])


def test_load_matches_a_reference_replay(store):
    rng = np.random.default_rng(5)
    reference: dict[int, np.ndarray] = {}
    for step in range(40):
        batch = rng.integers(0, 300, size=rng.integers(1, 60))
        if step % 4 == 3:
            store.delete(batch)
            for i in batch:
                reference.pop(int(i), None)
        else:
            vectors = _vectors(len(batch), seed=step)
            store.append(batch, vectors)
            for i, vector in zip(batch, vectors, strict=True):
                reference[int(i)] = vector
    ids, vectors = store.load()
    assert ids.tolist() == sorted(reference)
    np.testing.assert_array_equal(vectors, np.array([reference[i] for i in sorted(reference)]))


def test_load_scales_with_numpy_not_python_loops(store):
    n = 400_000
    ids = np.random.default_rng(0).permutation(n).astype(np.int64)
    small = np.zeros((n // 4, DIM), np.float32)
    for part in range(4):
        chunk = ids[part * n // 4 : (part + 1) * n // 4]
        store.append(chunk, small + part)
    store.append(ids[:1_000], np.full((1_000, DIM), 9, np.float32))
    store.delete(ids[-1_000:])
    started = time.perf_counter()
    loaded_ids, vectors = store.load()
    elapsed = time.perf_counter() - started
    assert len(loaded_ids) == n - 1_000
    assert (vectors[np.searchsorted(loaded_ids, ids[:1_000])] == 9).all()
    assert elapsed < 5, f"load of {n} ids took {elapsed:.1f}s"


def test_temp_and_foreign_files_are_never_read(store):
    store.append(np.array([1]), _vectors(1))
    directory = store.directory
    (directory / ".part-000002.npz.x1y2.tmp").write_bytes(b"half a part")
    (directory / "part-000003.npz.tmp").write_bytes(b"half a part")
    (directory / "part-3.npz").write_bytes(b"not ours")
    assert store.load()[0].tolist() == [1]
    assert store.append(np.array([2]), _vectors(1)).name == "part-000002.npz"


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_part_raises_naming_the_file(store, damage):
    store.append(np.arange(50), _vectors(50))
    path = store.append(np.arange(50, 100), _vectors(50, 1))
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF  # inside the vectors member
    path.write_bytes(bytes(raw))
    with pytest.raises(VectorStoreError, match="corrupt vector store part .*part-000002.npz"):
        store.load()


def test_part_with_wrong_shape_is_corrupt(store):
    store.append(np.array([1]), _vectors(1))
    with open(store.directory / "part-000002.npz", "wb") as handle:
        np.savez(handle, kind=np.array("append"), ids=np.array([1, 2]), vectors=_vectors(1))
    with pytest.raises(VectorStoreError, match="part-000002.npz: vectors must be float32"):
        store.load()


def test_opening_with_another_dim_raises(tmp_path, store):
    store.append(np.array([1]), _vectors(1))
    with pytest.raises(VectorStoreError, match="dimension 8 vectors, opened with dim=16"):
        VectorStore(tmp_path / "vectors", "m1", 16)
    assert VectorStore(tmp_path / "vectors", "m2", 16).count() == 0  # other model: other dir


def test_bad_input_is_refused(store, tmp_path):
    with pytest.raises(ValueError, match=r"shape \[n, 8\]"):
        store.append(np.array([1]), np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="1 ids but 2 vectors"):
        store.append(np.array([1]), _vectors(2))
    with pytest.raises(ValueError, match="NaN"):
        store.append(np.array([1]), np.full((1, DIM), np.nan))
    with pytest.raises(ValueError, match="integers"):
        store.delete(np.array([1.5]))
    with pytest.raises(ValueError, match="model_version"):
        VectorStore(tmp_path, "../escape", DIM)
    assert store.append(np.empty(0, np.int64), np.empty((0, DIM))) is None
    assert store.part_paths() == []


def test_load_only_some_ids_reads_their_latest_vectors(store):
    first, second = _vectors(6, 1), _vectors(2, 2)
    store.append(np.arange(6), first)
    store.append(np.array([4, 9]), second)  # id 4 re-embedded
    store.delete(np.array([3]))
    ids, vectors = store.load(only=np.array([9, 4, 3, 0, 42]))  # 3 deleted, 42 never there
    assert ids.tolist() == [0, 4, 9]
    assert np.array_equal(vectors, np.stack([first[0], second[0], second[1]]))
    all_ids, all_vectors = store.load()
    assert np.array_equal(store.load(only=all_ids)[1], all_vectors)


def test_lookup_maps_the_parts_and_answers_like_load(store):
    """The API's id → vector lookup: every live id's latest vector, read through memory
    maps of the parts (nothing copied up front), deleted and unknown ids absent."""
    rng = np.random.default_rng(8)
    for step in range(12):
        batch = rng.integers(0, 200, size=rng.integers(1, 40))
        if step % 3 == 2:
            store.delete(batch)
        else:
            store.append(batch, _vectors(len(batch), seed=step))
    store.append(np.array([], dtype=np.int64), np.zeros((0, DIM), dtype=np.float32))
    ids, vectors = store.load()
    lookup = store.lookup()
    assert len(lookup) == len(ids) and lookup.ids.tolist() == ids.tolist()
    assert all(isinstance(m, np.memmap) for m in lookup.maps if m is not None and len(m))
    for i, vector in zip(ids, vectors, strict=True):
        found = lookup.get(int(i))
        assert found.shape == (1, DIM) and not isinstance(found, np.memmap)
        np.testing.assert_array_equal(found[0], vector)
    gone = sorted(set(range(200)) - set(ids.tolist()))
    assert all(lookup.get(i) is None for i in gone) and lookup.get(10**12) is None


def test_lookup_of_an_empty_store_finds_nothing(store):
    assert len(store.lookup()) == 0 and store.lookup().get(1) is None


def test_a_part_that_cannot_be_mapped_is_named(store):
    import zipfile

    store.append(np.array([1, 2]), _vectors(2))
    path = store.part_paths()[0][1]
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:  # numpy can read it
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    assert store.load()[0].tolist() == [1, 2]
    with pytest.raises(VectorStoreError, match="part-000001.npz.*compressed"):
        store.lookup()

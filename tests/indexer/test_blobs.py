"""indexer.blobs: content-addressed layout, idempotent durable writes, safe paths."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from indexer.blobs import BlobStore
from indexer.images import content_id

DATA = b"some image bytes"
ITEM = content_id(DATA)


@pytest.fixture
def store(settings) -> BlobStore:
    return BlobStore.for_images(settings)


def test_layout_fans_out_by_id(store, settings):
    path = store.put(ITEM, DATA, "jpg")
    assert path == settings.images_dir / ITEM[:2] / ITEM[2:4] / f"{ITEM}.jpg"
    assert path.read_bytes() == DATA
    assert store.path_for(ITEM, "jpg") == path
    assert str(store.key(ITEM, "jpg")) == f"{ITEM[:2]}/{ITEM[2:4]}/{ITEM}.jpg"


def test_catalog_paths_are_relative_to_home(store, settings):
    store.put(ITEM, DATA, "png")
    relative = store.relative(ITEM, "png")
    assert relative == f"images/{ITEM[:2]}/{ITEM[2:4]}/{ITEM}.png"
    assert store.resolve(relative) == store.path_for(ITEM, "png")
    thumbs = BlobStore.for_thumbnails(settings)
    assert thumbs.relative(ITEM, "jpg").startswith("thumbnails/")


def test_put_is_idempotent_and_leaves_existing_file_untouched(store):
    path = store.put(ITEM, DATA, "jpg")
    stat = path.stat()
    again = store.put(ITEM, b"different bytes must not overwrite", "jpg")
    assert again == path
    assert path.read_bytes() == DATA
    assert path.stat().st_mtime_ns == stat.st_mtime_ns


def test_no_temp_files_left_behind(store):
    for i in range(5):
        data = f"blob {i}".encode()
        store.put(content_id(data), data, "bin")
    leftovers = [
        name for _, _, files in os.walk(store.root) for name in files if name.startswith(".")
    ]
    assert leftovers == []


def test_concurrent_puts_of_the_same_blob(store):
    with ThreadPoolExecutor(8) as pool:
        paths = set(pool.map(lambda _: store.put(ITEM, DATA, "jpg"), range(32)))
    assert len(paths) == 1
    assert paths.pop().read_bytes() == DATA


def test_open_read_exists_delete(store):
    assert not store.exists(ITEM, "jpg")
    with pytest.raises(FileNotFoundError):
        store.read(ITEM, "jpg")
    store.put(ITEM, DATA, "jpg")
    assert store.exists(ITEM, "jpg")
    with store.open(ITEM, "jpg") as handle:
        assert handle.read() == DATA
    assert store.read(ITEM, "jpg") == DATA
    assert store.delete(ITEM, "jpg") is True
    assert store.delete(ITEM, "jpg") is False
    assert not store.exists(ITEM, "jpg")


def test_delete_any_extension(store):
    store.put(ITEM, DATA, "png")
    assert store.delete(ITEM) is True
    assert not store.exists(ITEM, "png")
    assert store.delete(ITEM) is False


@pytest.mark.parametrize("bad_id", ["../" * 10 + "etc/passwd", "ABC", ITEM.upper(), ITEM[:-1]])
def test_bad_ids_are_refused(store, bad_id):
    with pytest.raises(ValueError, match="64 lower-case hex"):
        store.put(bad_id, DATA, "jpg")


@pytest.mark.parametrize("bad_ext", ["", "j/pg", "../x", "toolongext"])
def test_bad_extensions_are_refused(store, bad_ext):
    with pytest.raises(ValueError, match="extension"):
        store.path_for(ITEM, bad_ext)


def test_resolve_refuses_paths_outside_the_store(store):
    with pytest.raises(ValueError, match="not inside the store"):
        store.resolve("../etc/passwd")
    with pytest.raises(ValueError, match="not inside the store"):
        store.resolve("thumbnails/ab/cd/x.jpg")


def test_root_must_be_inside_home(tmp_path):
    with pytest.raises(ValueError, match="not inside home"):
        BlobStore(tmp_path / "a", home=tmp_path / "b")

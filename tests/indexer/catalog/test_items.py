"""indexer.catalog.items against SQLite and a real PostgreSQL (the ``catalog_url`` fixture)."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from indexer.catalog import (
    Catalog,
    ItemStatus,
    utcnow,
    vector_id_for,
)


def item_id(n: int) -> str:
    return hashlib.sha256(f"image {n}".encode()).hexdigest()


def add(catalog: Catalog, n: int, **fields):
    defaults = {
        "source": "/data/folder",
        "source_url": f"file:///data/folder/{n}.jpg",
        "stored_path": f"images/{n}.jpg",
        "thumbnail_path": f"thumbnails/{n}.jpg",
        "size_bytes": 1000 + n,
        "width": 64,
        "height": 48,
        "product_id": f"p{n % 3}",
        "label": "shoes",
    }
    return catalog.add_item(item_id(n), **{**defaults, **fields})


def test_vector_id_is_first_8_bytes_masked_to_63_bits():
    digest = "ff" * 8 + "00" * 24
    assert vector_id_for(digest) == (1 << 63) - 1
    digest = "0102030405060708" + "ff" * 24
    assert vector_id_for(digest) == 0x0102030405060708
    for n in range(100):
        assert 0 <= vector_id_for(item_id(n)) < 1 << 63
    with pytest.raises(ValueError):
        vector_id_for("abc")


def test_add_item_round_trip(catalog):
    before = utcnow()
    item, created = add(catalog, 1, title="Red shoe", page_url="https://shop.example/p1")
    assert created is True
    assert item.id == item_id(1)
    assert item.vector_id == vector_id_for(item.id)
    assert item.status == ItemStatus.STORED == "stored"
    assert (item.width, item.height, item.size_bytes) == (64, 48, 1001)
    assert item.title == "Red shoe" and item.label == "shoes" and item.product_id == "p1"
    assert item.page_url == "https://shop.example/p1"
    assert item.error is None and item.model_version is None
    assert item.created_at.tzinfo is not None and item.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= item.created_at <= utcnow() + timedelta(seconds=5)
    assert catalog.get(item.id) == item


def test_re_adding_is_a_no_op(catalog):
    first, created = add(catalog, 1)
    again, created_again = add(catalog, 1, title="other title", source_url="file:///other.jpg")
    assert created and not created_again
    assert again == first
    assert catalog.counts()["stored"] == 1


def test_concurrent_adds_of_the_same_item_create_one(catalog):
    barrier = threading.Barrier(6)

    def worker(_: int) -> bool:
        barrier.wait()
        return add(catalog, 7)[1]

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(worker, range(6)))
    assert created.count(True) == 1
    assert catalog.counts()["stored"] == 1


def test_two_catalog_objects_on_one_database(catalog_url, catalog):
    other = Catalog.open(catalog_url)
    try:
        assert add(catalog, 1)[1] is True
        assert add(other, 1)[1] is False
        assert other.get(item_id(1)) is not None
    finally:
        other.close()


def test_record_failure_and_listing(catalog):
    failed = catalog.record_failure(
        item_id(1),
        source="/data",
        source_url="file:///data/bad.jpg",
        reason="truncated image data",
        size_bytes=10,
    )
    assert failed.status == "failed" and failed.error == "truncated image data"
    assert failed.stored_path is None
    failures = catalog.failures(limit=10)
    assert [(f.id, f.source_url, f.error) for f in failures] == [
        (item_id(1), "file:///data/bad.jpg", "truncated image data")
    ]
    again = catalog.record_failure(
        item_id(1), source="/data", source_url="file:///data/bad2.jpg", reason="other reason"
    )
    assert again.error == "other reason"
    assert catalog.counts()["failed"] == 1


def test_failure_never_downgrades_a_good_item(catalog):
    good, _ = add(catalog, 1)
    kept = catalog.record_failure(item_id(1), source="/x", reason="nope", size_bytes=1)
    assert kept.status == "stored" and kept.error is None
    assert catalog.get(item_id(1)) == good


def test_adding_a_failed_item_again_replaces_the_failure(catalog):
    catalog.record_failure(item_id(1), source="/x", reason="image too large")
    item, created = add(catalog, 1)
    assert created is True
    assert item.status == "stored" and item.error is None
    assert item.stored_path == "images/1.jpg"
    assert catalog.counts() == {"stored": 1, "embedded": 0, "indexed": 0, "failed": 0, "deleted": 0}


def test_get_many_and_by_vector_ids(catalog):
    for n in range(5):
        add(catalog, n)
    found = catalog.get_many([item_id(1), item_id(3), "0" * 64, item_id(1)])
    assert set(found) == {item_id(1), item_id(3)}
    by_vid = catalog.by_vector_ids([vector_id_for(item_id(2)), vector_id_for(item_id(4)), 12345])
    assert {k: v.id for k, v in by_vid.items()} == {
        vector_id_for(item_id(2)): item_id(2),
        vector_id_for(item_id(4)): item_id(4),
    }
    assert catalog.get("f" * 64) is None


def test_many_ids_in_one_call(catalog):
    ids = [add(catalog, n)[0].id for n in range(30)]
    assert len(catalog.get_many(ids + [item_id(n) for n in range(1000, 2200)])) == 30
    assert catalog.mark_embedded(ids + [item_id(n) for n in range(1000, 2200)], "m1") == 30


def test_status_lifecycle(catalog):
    ids = [add(catalog, n)[0].id for n in range(4)]
    assert catalog.mark_embedded(ids[:3], "model-a") == 3
    assert catalog.mark_indexed(ids[:2] + [ids[3]]) == 2  # ids[3] is not embedded yet
    assert catalog.mark_failed(ids[3], "no longer decodes") is True
    assert catalog.counts() == {"stored": 0, "embedded": 1, "indexed": 2, "failed": 1, "deleted": 0}
    embedded = catalog.get(ids[0])
    assert embedded.status == "indexed" and embedded.model_version == "model-a"
    assert embedded.updated_at >= embedded.created_at
    assert catalog.mark_embedded([ids[3]], "model-a") == 0  # failed stays failed
    assert catalog.mark_failed("0" * 64, "x") is False


def test_items_needing_embedding(catalog):
    ids = sorted(add(catalog, n)[0].id for n in range(5))
    catalog.mark_embedded(ids[:2], "old")
    catalog.mark_indexed(ids[:1])
    catalog.mark_embedded(ids[2:3], "new")
    catalog.mark_failed(ids[4], "broken")
    needing = [i.id for i in catalog.items_needing_embedding("new")]
    assert needing == sorted([ids[0], ids[1], ids[3]])
    assert [i.id for i in catalog.items_needing_embedding("old")] == sorted([ids[2], ids[3]])
    assert len(catalog.items_needing_embedding("new", limit=2)) == 2


def test_paging_by_id(catalog):
    ids = sorted(add(catalog, n)[0].id for n in range(25))
    pages, after = [], None
    while page := catalog.items_with_status("stored", limit=10, after_id=after):
        pages.append([i.id for i in page])
        after = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == ids
    assert [i.id for i in catalog.iter_items_with_status("stored", page_size=7)] == ids
    assert catalog.items_with_status("failed") == []


def test_unknown_status_is_refused_with_the_allowed_ones(catalog):
    with pytest.raises(ValueError, match="stored, embedded, indexed, failed"):
        catalog.items_with_status("done")


def test_status_check_constraint(catalog):
    add(catalog, 1)
    with pytest.raises(sa.exc.IntegrityError), catalog.engine.begin() as conn:
        conn.execute(sa.text("UPDATE items SET status = 'bogus'"))


def test_a_deleted_item_leaves_searches_at_once_and_its_row_once_purged(catalog):
    add(catalog, 1)
    add(catalog, 2)
    assert catalog.mark_deleted([item_id(1), item_id(99)]) == 1  # unknown ids: harmless
    assert catalog.mark_deleted([item_id(1)]) == 0  # once
    assert catalog.get(item_id(1)).status == "deleted"
    both = [vector_id_for(item_id(1)), vector_id_for(item_id(2))]
    assert list(catalog.by_vector_ids(both)) == [vector_id_for(item_id(2))]
    assert [item.id for item in catalog.deleted_items()] == [item_id(1)]
    assert catalog.counts()["deleted"] == 1
    assert catalog.purge_deleted([item_id(1), item_id(2)]) == 1  # item 2 is not deleted
    assert catalog.get(item_id(1)) is None and catalog.get(item_id(2)) is not None


def test_a_deleted_image_submitted_again_is_taken_in_again_and_kept(catalog):
    add(catalog, 1)
    catalog.mark_deleted([item_id(1)])
    item, created = catalog.add_item(item_id(1), stored_path="images/aa/again.jpg")
    assert created and (item.status, item.stored_path) == ("stored", "images/aa/again.jpg")
    assert catalog.purge_deleted([item_id(1)]) == 0  # wanted again: the writer keeps it


def test_failures_newest_first_and_limited(catalog):
    for n in range(5):
        catalog.record_failure(item_id(n), source="/x", source_url=f"u{n}", reason=f"r{n}")
    failures = catalog.failures(limit=3)
    assert len(failures) == 3
    assert all(f.status == "failed" for f in failures)
    assert failures[0].updated_at >= failures[-1].updated_at


def test_vector_ids_matching_a_label_or_product_leave_out_deleted_items(catalog):
    for name, label, product in (("a", "shoes", "p1"), ("b", "shoes", "p2"),
                                 ("c", "hats", "p1"), ("d", "shoes", "p1")):
        catalog.add_item(name * 64, source="/x", label=label, product_id=product)
    ids = {name: vector_id_for(name * 64) for name in "abcd"}
    assert catalog.vector_ids_matching(label="shoes").tolist() == sorted(
        ids[n] for n in "abd")
    assert catalog.vector_ids_matching(product_id="p1").tolist() == sorted(
        ids[n] for n in "acd")
    assert catalog.vector_ids_matching(label="shoes", product_id="p1").tolist() == sorted(
        ids[n] for n in "ad")
    assert catalog.vector_ids_matching(label="socks").tolist() == []
    catalog.mark_deleted(["d" * 64])
    assert catalog.vector_ids_matching(label="shoes", product_id="p1").tolist() == [ids["a"]]
    with pytest.raises(ValueError, match="label, a product id or both"):
        catalog.vector_ids_matching()

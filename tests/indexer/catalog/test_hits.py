"""indexer.catalog.hits: the search results' join on the driver, against the Core query."""

from __future__ import annotations

import hashlib
from datetime import UTC

import pytest

from indexer.catalog import Catalog
from indexer.catalog.hits import LiveItemsByVectorId
from indexer.catalog.records import item_from_row, vector_id_for
from indexer.catalog.schema import items_table


def add(catalog: Catalog, n: int) -> str:
    item_id = hashlib.sha256(f"photo {n}".encode()).hexdigest()
    catalog.add_item(
        item_id, source="/data", source_url=f"file:///data/{n}.jpg", stored_path=f"images/{n}.jpg",
        product_id=f"p{n // 3}", label="Oat & Co <Natural>" if n % 2 else None,
        title=f"photo {n} ✓", width=640 + n, height=480,
    )  # fmt: skip
    return item_id


def core_items(catalog: Catalog, vector_ids: list[int]) -> dict:
    """The same rows through SQLAlchemy Core (what the join replaced)."""
    query = items_table.select().where(items_table.c.vector_id.in_(vector_ids),
                                       items_table.c.status != "deleted")  # fmt: skip
    with catalog.engine.connect() as conn:
        return {row.vector_id: item_from_row(row) for row in conn.execute(query)}


def test_the_same_items_as_the_core_query_for_every_list_size(catalog):
    ids = [add(catalog, n) for n in range(40)]
    catalog.mark_deleted([ids[5], ids[6]])
    vector_ids = [vector_id_for(i) for i in ids]
    lookup = LiveItemsByVectorId(catalog.engine, largest=64)
    for size in (1, 2, 15, 16, 17, 33, 40):
        asked = vector_ids[:size] + [12345]  # an id no item has
        found = lookup.lookup(asked)
        assert found == core_items(catalog, asked)
        assert vector_id_for(ids[5]) not in found and vector_id_for(ids[6]) not in found
    item = found[vector_ids[1]]
    assert item.created_at.tzinfo == UTC and item.label == "Oat & Co <Natural>"
    assert item.title == "photo 1 ✓" and item.width == 641


def test_repeated_ids_and_an_empty_list(catalog):
    ids = [add(catalog, n) for n in range(3)]
    lookup = LiveItemsByVectorId(catalog.engine, largest=64)
    assert lookup.lookup([]) == {}
    twice = [vector_id_for(ids[0])] * 2 + [vector_id_for(ids[1])]
    assert set(lookup.lookup(twice)) == {vector_id_for(ids[0]), vector_id_for(ids[1])}


def test_a_list_longer_than_its_largest_is_refused(catalog):
    with pytest.raises(ValueError, match="at most 4 ids"):
        LiveItemsByVectorId(catalog.engine, largest=4).lookup(list(range(5)))


def test_catalog_by_vector_ids_chunks_long_lists(catalog):
    ids = [add(catalog, n) for n in range(30)]
    wanted = [vector_id_for(i) for i in ids] + list(range(1, 1200))  # > one chunk of 500
    assert set(catalog.by_vector_ids(wanted)) == {vector_id_for(i) for i in ids}

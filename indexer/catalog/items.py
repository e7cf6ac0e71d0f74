"""Items: one stored image each, and its state.

Item lifecycle (``items.status``)::

    stored ──embed──▶ embedded ──index──▶ indexed
       │                  ▲                  │
       └────── failed     └── new model ─────┘  (re-embedded under model_version)

    any ──delete──▶ deleted ──index writer──▶ (row purged)

A deleted item is skipped by every search at once (:meth:`by_vector_ids`); its row
stays until the single index writer has taken its vector out of the index
(:meth:`purge_deleted`), so no writer can miss it.

An item id is the sha256 of the image bytes, so writes are idempotent: adding an
id that exists is a no-op (``INSERT … ON CONFLICT DO NOTHING``), which also makes
concurrent workers safe without locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from indexer.catalog.base import CatalogBase
from indexer.catalog.hits import LiveItemsByVectorId
from indexer.catalog.records import (
    CHUNK,
    REPLACEABLE_STATUSES,
    CatalogError,
    Item,
    ItemStatus,
    check_status,
    chunked,
    item_from_row,
    utcnow,
    vector_id_for,
)
from indexer.catalog.schema import items_table


def _new_row(item_id: str, status: ItemStatus, error: str | None, **fields: Any) -> dict:
    """A whole items row, as first written: columns not given are empty."""
    now = utcnow()
    return {
        **{column.name: None for column in items_table.columns},
        **fields,
        "id": item_id,
        "vector_id": vector_id_for(item_id),
        "status": status.value,
        "error": error,
        "created_at": now,
        "updated_at": now,
    }


def _read_back(conn: Connection, values: dict) -> Row:
    """The row of ``values["id"]`` after an insert or update; none: its vector id clashed."""
    items = items_table
    row = conn.execute(items.select().where(items.c.id == values["id"])).one_or_none()
    if row is None:
        raise CatalogError(
            f"item {values['id']} clashes with another item's vector id {values['vector_id']}"
        )
    return row


class ItemsMixin(CatalogBase):
    """Add, update, read and count items."""

    def add_item(
        self,
        item_id: str,
        *,
        source: str | None = None,
        source_url: str | None = None,
        stored_path: str | None = None,
        thumbnail_path: str | None = None,
        size_bytes: int | None = None,
        width: int | None = None,
        height: int | None = None,
        product_id: str | None = None,
        label: str | None = None,
        title: str | None = None,
        page_url: str | None = None,
    ) -> tuple[Item, bool]:
        """Add a stored item. Returns ``(item, created)``; an existing good item is kept as is.

        A previous *failed* row for the same id is replaced (the bytes decode now,
        e.g. after a limit was raised) and counts as created; so is a *deleted* one
        whose vector the index writer has not removed yet (the image is wanted again).
        """
        values = _new_row(
            item_id, ItemStatus.STORED, None, source=source, source_url=source_url,
            stored_path=stored_path, thumbnail_path=thumbnail_path, size_bytes=size_bytes,
            width=width, height=height, product_id=product_id, label=label, title=title,
            page_url=page_url,
        )  # fmt: skip
        items = items_table
        with self.engine.begin() as conn:
            created = self._insert_ignore(conn, items, values)
            if not created:
                retry = {k: v for k, v in values.items() if k not in ("id", "created_at")}
                created = (
                    conn.execute(
                        items.update()
                        .where(
                            items.c.id == item_id,
                            items.c.status.in_([s.value for s in REPLACEABLE_STATUSES]),
                        )
                        .values(retry)
                    ).rowcount
                    == 1
                )
            row = _read_back(conn, values)
        return item_from_row(row), created

    def record_failure(
        self,
        item_id: str,
        *,
        source: str | None = None,
        source_url: str | None = None,
        reason: str,
        size_bytes: int | None = None,
        product_id: str | None = None,
        label: str | None = None,
        title: str | None = None,
        page_url: str | None = None,
    ) -> Item:
        """Record bytes that could not be used. A good item with the same id is never downgraded."""
        values = _new_row(
            item_id, ItemStatus.FAILED, reason, source=source, source_url=source_url,
            size_bytes=size_bytes, product_id=product_id, label=label, title=title,
            page_url=page_url,
        )  # fmt: skip
        items = items_table
        with self.engine.begin() as conn:
            if not self._insert_ignore(conn, items, values):
                conn.execute(
                    items.update()
                    .where(items.c.id == item_id, items.c.status == ItemStatus.FAILED.value)
                    .values(source=source, source_url=source_url, error=reason,
                            updated_at=values["updated_at"])
                )  # fmt: skip
            row = _read_back(conn, values)
        return item_from_row(row)

    def mark_embedded(self, item_ids: Sequence[str], model_version: str) -> int:
        """Items now have a vector from ``model_version``. Failed items are left alone."""
        return self._set_status(
            item_ids,
            {"status": ItemStatus.EMBEDDED.value, "model_version": model_version, "error": None},
            only_from=(ItemStatus.STORED, ItemStatus.EMBEDDED, ItemStatus.INDEXED),
        )

    def mark_indexed(self, item_ids: Sequence[str]) -> int:
        """Embedded items are now in the live index."""
        return self._set_status(
            item_ids,
            {"status": ItemStatus.INDEXED.value},
            only_from=(ItemStatus.EMBEDDED, ItemStatus.INDEXED),
        )

    def mark_failed(self, item_id: str, reason: str) -> bool:
        """A later stage found the item unusable (e.g. it no longer decodes)."""
        return (
            self._set_status(
                [item_id], {"status": ItemStatus.FAILED.value, "error": reason}, only_from=None
            )
            == 1
        )

    def _set_status(
        self,
        item_ids: Sequence[str],
        values: dict[str, Any],
        only_from: Iterable[ItemStatus] | None,
    ) -> int:
        ids = list(dict.fromkeys(item_ids))
        values = {**values, "updated_at": utcnow()}
        changed = 0
        with self.engine.begin() as conn:
            for chunk in chunked(ids):
                stmt = items_table.update().where(items_table.c.id.in_(chunk)).values(values)
                if only_from is not None:
                    stmt = stmt.where(items_table.c.status.in_([s.value for s in only_from]))
                changed += conn.execute(stmt).rowcount
        return changed

    def mark_deleted(self, item_ids: Sequence[str]) -> int:
        """Items are deleted: no search returns them from now on. Returns how many changed."""
        return self._set_status(
            item_ids,
            {"status": ItemStatus.DELETED.value},
            only_from=[s for s in ItemStatus if s != ItemStatus.DELETED],
        )

    def deleted_items(self, limit: int | None = None) -> list[Item]:
        """Deleted items whose rows the index writer has not purged yet."""
        return self.items_with_status(ItemStatus.DELETED, limit=limit)

    def purge_deleted(self, item_ids: Sequence[str]) -> int:
        """Drop the rows of items that are still deleted (one re-added since is kept)."""
        purged = 0
        with self.engine.begin() as conn:
            for chunk in chunked(list(dict.fromkeys(item_ids))):
                purged += conn.execute(
                    items_table.delete().where(
                        items_table.c.id.in_(chunk),
                        items_table.c.status == ItemStatus.DELETED.value,
                    )
                ).rowcount
        return purged

    # -- items: reads ---------------------------------------------------------

    def get(self, item_id: str) -> Item | None:
        row = self._row_by_id(items_table, item_id)
        return item_from_row(row) if row is not None else None

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """Items by id; ids that are not in the catalog are simply absent from the result."""
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, Item] = {}
        with self.engine.connect() as conn:
            for chunk in chunked(ids):
                for row in conn.execute(items_table.select().where(items_table.c.id.in_(chunk))):
                    found[row.id] = item_from_row(row)
        return found

    def by_vector_ids(self, vector_ids: Iterable[int]) -> dict[int, Item]:
        """Live items for faiss search results, keyed by vector id (deleted ones are absent)."""
        ids = list(dict.fromkeys(int(v) for v in vector_ids))
        found: dict[int, Item] = {}
        for chunk in chunked(ids):
            found.update(self._live_items_by_vector_id.lookup(chunk))
        return found

    @cached_property
    def _live_items_by_vector_id(self) -> LiveItemsByVectorId:
        return LiveItemsByVectorId(self.engine, largest=CHUNK)

    def vector_ids_matching(self, *, label: str | None = None,
                            product_id: str | None = None) -> np.ndarray:
        """Sorted vector ids (int64) of the live items with this label and/or product id.

        What an exact filter restricts a search to (``IDSelector``); read through the
        ``label`` and ``product_id`` indexes. Items not yet in the index may be among
        them: a search simply does not find those.
        """
        if label is None and product_id is None:
            raise ValueError("give a label, a product id or both")
        conditions = [items_table.c.status != ItemStatus.DELETED.value]
        if label is not None:
            conditions.append(items_table.c.label == label)
        if product_id is not None:
            conditions.append(items_table.c.product_id == product_id)
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(items_table.c.vector_id).where(*conditions)).scalars()
            ids = np.fromiter(found, dtype=np.int64)
        ids.sort()
        return ids

    def items_with_status(
        self, status: str, limit: int | None = None, after_id: str | None = None
    ) -> list[Item]:
        """One page of items in a status, ordered by id; pass the last id as ``after_id``."""
        status = check_status(status, ItemStatus)
        return self._page(items_table.c.status == status, limit, after_id)

    def iter_items_with_status(self, status: str, page_size: int = 1000) -> Iterator[Item]:
        """Every item in a status, fetched page by page (keyset paging, no OFFSET)."""
        after: str | None = None
        while page := self.items_with_status(status, limit=page_size, after_id=after):
            yield from page
            after = page[-1].id

    def items_needing_embedding(
        self, model_version: str, limit: int | None = None, after_id: str | None = None
    ) -> list[Item]:
        """Stored items, and embedded/indexed ones whose vector came from another model."""
        c = items_table.c
        condition = sa.or_(
            c.status == ItemStatus.STORED.value,
            sa.and_(
                c.status.in_([ItemStatus.EMBEDDED.value, ItemStatus.INDEXED.value]),
                sa.or_(c.model_version.is_(None), c.model_version != model_version),
            ),
        )
        return self._page(condition, limit, after_id)

    def _page(
        self, condition: sa.ColumnElement[bool], limit: int | None, after_id: str | None
    ) -> list[Item]:
        stmt = items_table.select().where(condition).order_by(items_table.c.id)
        if after_id is not None:
            stmt = stmt.where(items_table.c.id > after_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [item_from_row(row) for row in conn.execute(stmt)]

    def counts(self) -> dict[str, int]:
        """Number of items per status (every status present, zero included)."""
        result = {status.value: 0 for status in ItemStatus}
        stmt = sa.select(items_table.c.status, sa.func.count()).group_by(items_table.c.status)
        with self.engine.connect() as conn:
            for status, count in conn.execute(stmt):
                result[status] = count
        return result

    def failures(self, limit: int = 100) -> list[Item]:
        """Most recent failures first; ``id``, ``source_url`` and ``error`` say what and why."""
        stmt = (
            items_table.select()
            .where(items_table.c.status == ItemStatus.FAILED.value)
            .order_by(items_table.c.updated_at.desc(), items_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [item_from_row(row) for row in conn.execute(stmt)]

"""Job entries: one per image a job's source offers (its URL or path, its state, the
item it became, the reason it failed), or per item a re-crawl found gone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from indexer.catalog.base import CatalogBase
from indexer.catalog.records import (
    EntryKind,
    EntryState,
    Item,
    ItemStatus,
    JobEntry,
    JobStatus,
    check_status,
    chunked,
    entry_from_row,
    item_from_row,
    utcnow,
)
from indexer.catalog.schema import items_table, job_entries_table, jobs_table


def entry_row(
    job_id: int, chunk: int, kind: str, entry: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The row of a new pending entry (``entry``: location, metadata, replaces, item_id)."""
    return {
        "job_id": job_id,
        "chunk": chunk,
        "kind": kind,
        "location": entry["location"],
        "product_id": entry.get("product_id"),
        "label": entry.get("label"),
        "title": entry.get("title"),
        "page_url": entry.get("page_url"),
        "state": EntryState.PENDING.value,
        "item_id": entry.get("item_id"),
        "replaces": entry.get("replaces"),
        "error": None,
        "permanent": None,
        "attempts": 0,
        "updated_at": now,
    }


class EntriesMixin(CatalogBase):
    """Read, finish and count a job's entries."""

    def job_entries(
        self,
        job_id: int,
        *,
        chunk: int | None = None,
        states: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[JobEntry]:
        """A job's entries in order, optionally one chunk's, in some states or kinds."""
        e = job_entries_table.c
        stmt = job_entries_table.select().where(e.job_id == job_id).order_by(e.id)
        if chunk is not None:
            stmt = stmt.where(e.chunk == chunk)
        if states is not None:
            stmt = stmt.where(e.state.in_([check_status(s, EntryState) for s in states]))
        if kinds is not None:
            stmt = stmt.where(e.kind.in_([check_status(k, EntryKind) for k in kinds]))
        with self.engine.connect() as conn:
            return [entry_from_row(row) for row in conn.execute(stmt)]

    def job_chunks(self, job_id: int, states: Iterable[str]) -> list[int]:
        """Chunks (ascending) holding at least one fetch entry in one of ``states``."""
        e = job_entries_table.c
        stmt = (
            sa.select(e.chunk)
            .where(
                e.job_id == job_id,
                e.chunk >= 0,
                e.state.in_([check_status(s, EntryState) for s in states]),
            )
            .distinct()
            .order_by(e.chunk)
        )
        with self.engine.connect() as conn:
            return [int(chunk) for chunk in conn.execute(stmt).scalars()]

    def finish_entry(
        self,
        entry_id: int,
        state: str,
        *,
        item_id: str | None = None,
        error: str | None = None,
        permanent: bool | None = None,
        removal: dict[str, Any] | None = None,
    ) -> None:
        """Record an entry's outcome, and a removal it implies, in one transaction.

        Only a pending entry changes, so a duplicate delivery that finishes second
        cannot add the same removal twice.
        """
        state = check_status(state, EntryState)
        now = utcnow()
        e = job_entries_table.c
        with self.engine.begin() as conn:
            row = conn.execute(
                job_entries_table.update()
                .where(e.id == entry_id, e.state == EntryState.PENDING.value)
                .values(
                    state=state,
                    item_id=item_id,
                    error=error,
                    permanent=permanent,
                    attempts=e.attempts + 1,
                    updated_at=now,
                )
                .returning(e.job_id)
            ).first()
            if row is None:
                return
            if removal is not None:
                conn.execute(
                    job_entries_table.insert().values(
                        entry_row(row.job_id, -1, EntryKind.REMOVE.value, removal, now)
                    )
                )
            conn.execute(
                jobs_table.update().where(jobs_table.c.id == row.job_id).values(updated_at=now)
            )

    def set_entry_states(self, entry_ids: Sequence[int], state: str) -> int:
        state = check_status(state, EntryState)
        now = utcnow()
        changed = 0
        with self.engine.begin() as conn:
            for chunk in chunked(list(entry_ids)):
                changed += conn.execute(
                    job_entries_table.update()
                    .where(job_entries_table.c.id.in_(chunk))
                    .values(state=state, updated_at=now)
                ).rowcount
        return changed

    def reset_failed_entries(self, job_id: int) -> int:
        """Failed fetches of a job become pending again (the job runs again); how many."""
        now = utcnow()
        e = job_entries_table.c
        with self.engine.begin() as conn:
            count = conn.execute(
                job_entries_table.update()
                .where(
                    e.job_id == job_id,
                    e.state == EntryState.FAILED.value,
                    e.kind.in_([EntryKind.URL.value, EntryKind.PATH.value]),
                )
                .values(state=EntryState.PENDING.value, error=None, permanent=None, updated_at=now)
            ).rowcount
            if count:
                conn.execute(
                    jobs_table.update()
                    .where(jobs_table.c.id == job_id)
                    .values(status=JobStatus.QUEUED.value, finished_at=None, updated_at=now)
                )
        return count

    def job_items(self, job_id: int, chunk: int | None = None) -> list[Item]:
        """The catalog items a job's (or one chunk's) done entries became, each once."""
        e = job_entries_table.c
        where = [e.job_id == job_id, e.state == EntryState.DONE.value, e.chunk >= 0]
        if chunk is not None:
            where.append(e.chunk == chunk)
        ids = sa.select(e.item_id).where(*where).scalar_subquery()
        stmt = items_table.select().where(items_table.c.id.in_(ids)).order_by(items_table.c.id)
        with self.engine.connect() as conn:
            return [item_from_row(row) for row in conn.execute(stmt)]

    def job_chunks_with_items(
        self, job_id: int, statuses: Iterable[str], idle_for: timedelta | None = None
    ) -> list[int]:
        """Chunks (ascending) whose done entries include an item in one of ``statuses``.

        With ``idle_for``: only chunks none of whose entries changed for that long.
        """
        e = job_entries_table.c
        with_items = (
            sa.select(e.chunk)
            .join(items_table, items_table.c.id == e.item_id)
            .where(
                e.job_id == job_id,
                e.chunk >= 0,
                e.state == EntryState.DONE.value,
                items_table.c.status.in_([check_status(s, ItemStatus) for s in statuses]),
            )
            .distinct()
        )
        if idle_for is None:
            stmt = with_items.order_by(e.chunk)
        else:
            stmt = (
                sa.select(e.chunk)
                .where(e.job_id == job_id, e.chunk.in_(with_items.scalar_subquery()))
                .group_by(e.chunk)
                .having(sa.func.max(e.updated_at) <= utcnow() - idle_for)
                .order_by(e.chunk)
            )
        with self.engine.connect() as conn:
            return [int(chunk) for chunk in conn.execute(stmt).scalars()]

    def touch_chunks(self, job_id: int, chunks: Sequence[int]) -> None:
        """Mark chunks as just looked at (the sweeper's clock; states do not change)."""
        if not chunks:
            return
        e = job_entries_table.c
        with self.engine.begin() as conn:
            conn.execute(
                job_entries_table.update()
                .where(e.job_id == job_id, e.chunk.in_(list(chunks)))
                .values(updated_at=utcnow())
            )

    def job_counts(self, job_id: int) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """``(fetch entries by state, removal entries by state, items by status)``.

        Items are those the job's done entries became, counted once each.
        """
        e = job_entries_table.c
        fetches = {state.value: 0 for state in (EntryState.PENDING, EntryState.DONE,
                                                EntryState.FAILED)}
        removals = {state.value: 0 for state in (EntryState.PENDING, EntryState.REMOVED,
                                                 EntryState.KEPT)}
        items = {status.value: 0 for status in ItemStatus}
        is_removal = e.kind == EntryKind.REMOVE.value
        by_state = (
            sa.select(is_removal.label("removal"), e.state, sa.func.count())
            .where(e.job_id == job_id)
            .group_by(is_removal, e.state)
        )
        item_ids = (
            sa.select(e.item_id)
            .where(e.job_id == job_id, e.state == EntryState.DONE.value, sa.not_(is_removal))
            .scalar_subquery()
        )
        by_status = (
            sa.select(items_table.c.status, sa.func.count())
            .where(items_table.c.id.in_(item_ids))
            .group_by(items_table.c.status)
        )
        with self.engine.connect() as conn:
            for removal, state, count in conn.execute(by_state):
                target = removals if removal else fetches
                target[state] = target.get(state, 0) + count
            for status, count in conn.execute(by_status):
                items[status] = count
        return fetches, removals, items

    def job_failures(self, job_id: int, limit: int | None = None) -> list[tuple[str, str]]:
        """``(location, reason)`` of failed fetches, then of items that failed later."""
        e = job_entries_table.c
        failed = (
            sa.select(e.location, e.error)
            .where(e.job_id == job_id, e.state == EntryState.FAILED.value)
            .order_by(e.id)
        )
        later = (
            sa.select(e.location, items_table.c.error)
            .join(items_table, items_table.c.id == e.item_id)
            .where(
                e.job_id == job_id,
                e.state == EntryState.DONE.value,
                e.kind != EntryKind.REMOVE.value,
                items_table.c.status == ItemStatus.FAILED.value,
            )
            .order_by(e.id)
        )
        result: list[tuple[str, str]] = []
        with self.engine.connect() as conn:
            for stmt in (failed, later):
                if limit is not None:
                    if len(result) >= limit:
                        break
                    stmt = stmt.limit(limit - len(result))
                result.extend((loc, error or "unknown error") for loc, error in conn.execute(stmt))
        return result

    def source_history(self, source: str, before_job_id: int | None = None) -> list[JobEntry]:
        """Every entry of earlier jobs of ``source``, oldest first (re-crawl baselines)."""
        e, j = job_entries_table.c, jobs_table.c
        stmt = (
            job_entries_table.select()
            .join(jobs_table, jobs_table.c.id == e.job_id)
            .where(j.source == source)
            .order_by(e.id)
        )
        if before_job_id is not None:
            stmt = stmt.where(e.job_id < before_job_id)
        with self.engine.connect() as conn:
            return [entry_from_row(row) for row in conn.execute(stmt)]

    def item_used_elsewhere(self, item_id: str, job_id: int, source: str | None) -> bool:
        """Whether another location of this job, or another source, still offers the item."""
        e, j = job_entries_table.c, jobs_table.c
        stmt = (
            sa.select(e.id)
            .join(jobs_table, j.id == e.job_id)
            .where(
                e.item_id == item_id,
                e.state == EntryState.DONE.value,
                e.kind != EntryKind.REMOVE.value,
                sa.or_(e.job_id == job_id, j.source.is_distinct_from(source)),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None


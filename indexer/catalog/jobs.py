"""Jobs: one ingest, re-crawl or re-index run each, created with their entries.

Progress is counted from the job's entries (see :mod:`indexer.catalog.entries`),
never from counters a duplicate task could bump twice. See :mod:`indexer.jobs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from indexer.catalog.base import CatalogBase
from indexer.catalog.entries import entry_row
from indexer.catalog.records import (
    FINISHED_JOB_STATUSES,
    EntryKind,
    Job,
    JobKind,
    JobStatus,
    check_status,
    chunked,
    job_from_row,
    utcnow,
)
from indexer.catalog.schema import job_entries_table, jobs_table


class JobsMixin(CatalogBase):
    """Create, plan, list and move jobs."""

    def create_job(
        self,
        kind: str,
        *,
        source: str | None = None,
        entries: Sequence[dict[str, Any]] = (),
        removals: Sequence[dict[str, Any]] = (),
        chunk_size: int = 64,
        status: str = JobStatus.QUEUED,
        message: str | None = None,
        planned: bool = True,
    ) -> Job:
        """A new job with its entries, in one transaction.

        ``planned=False``: the entries come later, from :meth:`plan_job` (a crawl
        finds them); until then the job has ``chunks == -1``.

        ``entries``: dicts with ``kind`` (url or path), ``location`` and optionally
        ``product_id``, ``label``, ``title``, ``page_url``, ``replaces``;
        they are numbered into chunks of ``chunk_size`` in the order given.
        ``removals``: dicts with ``location`` and ``item_id`` of items the source no
        longer offers (chunk -1, pending until the index writer removes them).
        """
        kind = check_status(kind, JobKind)
        status = check_status(status, JobStatus)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        now = utcnow()
        with self.engine.begin() as conn:
            job_id = conn.execute(
                jobs_table.insert()
                .values(
                    kind=kind,
                    source=source,
                    status=status,
                    message=message,
                    total=len(entries),
                    chunks=-(-len(entries) // chunk_size) if planned else -1,
                    chunk_size=chunk_size,
                    created_at=now,
                    updated_at=now,
                    started_at=None,
                    finished_at=now if status in FINISHED_JOB_STATUSES else None,
                )
                .returning(jobs_table.c.id)
            ).scalar_one()
            rows = []
            for position, entry in enumerate(entries):
                entry_kind = check_status(entry["kind"], EntryKind)
                if entry_kind == EntryKind.REMOVE:
                    raise ValueError("removals go in removals=, not entries=")
                rows.append(
                    entry_row(job_id, position // chunk_size, entry_kind, entry, now)
                )
            for removal in removals:
                rows.append(entry_row(job_id, -1, EntryKind.REMOVE.value, removal, now))
            for chunk in chunked(rows, 1000):
                conn.execute(job_entries_table.insert(), list(chunk))
            row = conn.execute(jobs_table.select().where(jobs_table.c.id == job_id)).one()
        return job_from_row(row)

    def plan_job(
        self,
        job_id: int,
        entries: Sequence[dict[str, Any]],
        removals: Sequence[dict[str, Any]] = (),
        message: str | None = None,
    ) -> bool:
        """Give an unplanned job its entries; False if it was planned already (by another run).

        The job row is claimed first (``chunks`` from -1 to the count), in the same
        transaction as the inserts, so two runs planning at once add entries once.
        """
        now = utcnow()
        c = jobs_table.c
        with self.engine.begin() as conn:
            size = conn.execute(sa.select(c.chunk_size).where(c.id == job_id)).scalar_one()
            claimed = conn.execute(
                jobs_table.update()
                .where(c.id == job_id, c.chunks == -1)
                .values(
                    total=len(entries),
                    chunks=-(-len(entries) // size),
                    message=message,
                    updated_at=now,
                )
            ).rowcount
            if claimed != 1:
                return False
            rows = [
                entry_row(job_id, position // size, check_status(e["kind"], EntryKind), e, now)
                for position, e in enumerate(entries)
            ]
            rows += [entry_row(job_id, -1, EntryKind.REMOVE.value, r, now) for r in removals]
            for chunk in chunked(rows, 1000):
                conn.execute(job_entries_table.insert(), list(chunk))
        return True

    def get_job(self, job_id: int) -> Job | None:
        row = self._row_by_id(jobs_table, job_id)
        return job_from_row(row) if row is not None else None

    def jobs(
        self,
        *,
        limit: int | None = 20,
        statuses: Iterable[str] | None = None,
        kind: str | None = None,
        source: str | None = None,
    ) -> list[Job]:
        """Jobs, newest first."""
        c = jobs_table.c
        stmt = jobs_table.select().order_by(c.id.desc())
        if statuses is not None:
            stmt = stmt.where(c.status.in_([check_status(s, JobStatus) for s in statuses]))
        if kind is not None:
            stmt = stmt.where(c.kind == check_status(kind, JobKind))
        if source is not None:
            stmt = stmt.where(c.source == source)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            return [job_from_row(row) for row in conn.execute(stmt)]

    def set_job_status(
        self,
        job_id: int,
        status: str,
        *,
        message: str | None = None,
        only_from: Iterable[str] | None = None,
    ) -> bool:
        """Move a job to ``status`` (only from ``only_from`` when given); True if it moved."""
        status = check_status(status, JobStatus)
        now = utcnow()
        c = jobs_table.c
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if message is not None:
            values["message"] = message
        if status == JobStatus.RUNNING:
            values["started_at"] = sa.func.coalesce(c.started_at, now)
            values["finished_at"] = None
        elif status in FINISHED_JOB_STATUSES:
            values["finished_at"] = now
        stmt = jobs_table.update().where(c.id == job_id).values(values)
        if only_from is not None:
            stmt = stmt.where(c.status.in_([check_status(s, JobStatus) for s in only_from]))
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def touch_job(self, job_id: int, message: str | None = None) -> None:
        """Record progress (the sweeper re-queues jobs that show none for a while)."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if message is not None:
            values["message"] = message
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(values))

    def stalled_jobs(self, idle_for: timedelta) -> list[Job]:
        """Unfinished jobs without any recorded progress for ``idle_for``."""
        c = jobs_table.c
        stmt = (
            jobs_table.select()
            .where(
                c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                c.updated_at <= utcnow() - idle_for,
            )
            .order_by(c.id)
        )
        with self.engine.connect() as conn:
            return [job_from_row(row) for row in conn.execute(stmt)]


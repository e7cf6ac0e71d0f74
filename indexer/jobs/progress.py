"""A job's progress, counted from its entries and their items; finishing a job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from indexer.catalog import Catalog, EntryState, ItemStatus, Job, JobKind, JobStatus


def require_job(catalog: Catalog, job_id: int) -> Job:
    job = catalog.get_job(job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    return job


@dataclass(frozen=True)
class JobProgress:
    """What a job has done so far, counted from its entries and their items."""

    job: Job
    fetches: dict[str, int]  # entries by state: pending, done, failed
    removals: dict[str, int]  # removal entries: pending, removed, kept
    items: dict[str, int]  # the items the done entries became, by status
    failures: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)

    @property
    def complete(self) -> bool:
        """Every entry fetched or failed, every item indexed or failed, every removal done."""
        return (
            self.fetches[EntryState.PENDING] == 0
            and self.removals[EntryState.PENDING] == 0
            and self.items[ItemStatus.STORED] == 0
            and self.items[ItemStatus.EMBEDDED] == 0
        )

    @property
    def failed(self) -> int:
        return self.fetches[EntryState.FAILED] + self.items[ItemStatus.FAILED]

    def summary(self) -> str:
        if self.job.kind == JobKind.REINDEX:
            return self.job.message or ""
        if not self.job.planned:
            return f"crawling {self.job.source}"
        f, i = self.fetches, self.items
        parts = [
            f"{f[EntryState.DONE] + f[EntryState.FAILED]}/{self.job.total} fetched",
            f"{i[ItemStatus.INDEXED]} indexed",
        ]
        if i[ItemStatus.STORED] or i[ItemStatus.EMBEDDED]:
            parts.append(f"{i[ItemStatus.STORED] + i[ItemStatus.EMBEDDED]} to embed or index")
        parts.append(f"{self.failed} failed")
        if self.removals[EntryState.REMOVED] or self.removals[EntryState.PENDING]:
            parts.append(f"{self.removals[EntryState.REMOVED]} removed")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        job = asdict(self.job)
        for key in ("created_at", "updated_at", "started_at", "finished_at"):
            job[key] = job[key].isoformat() if job[key] is not None else None
        return {
            **job,
            "fetches": dict(self.fetches),
            "removals": dict(self.removals),
            "items": dict(self.items),
            "failed": self.failed,
            "failures": [{"location": loc, "reason": why} for loc, why in self.failures],
        }


def progress(catalog: Catalog, job_id: int, *, failures: int | None = 100) -> JobProgress:
    job = require_job(catalog, job_id)
    fetches, removals, items = catalog.job_counts(job_id)
    listed = catalog.job_failures(job_id, limit=failures) if failures != 0 else []
    return JobProgress(job, fetches, removals, items, listed)


def finalize(catalog: Catalog, job_id: int) -> bool:
    """Mark the job done if nothing is left to do; True if it is (now or already) done."""
    state = progress(catalog, job_id, failures=0)
    if state.job.status == JobStatus.DONE:
        return True
    if state.job.kind == JobKind.REINDEX or not state.job.planned or not state.complete:
        return False
    return catalog.set_job_status(
        job_id, JobStatus.DONE, only_from=(JobStatus.QUEUED, JobStatus.RUNNING)
    )


def iter_jobs_progress(catalog: Catalog, limit: int = 20) -> Iterator[JobProgress]:
    for job in catalog.jobs(limit=limit):
        yield progress(catalog, job.id, failures=0)

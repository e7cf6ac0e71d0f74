"""indexer.catalog.jobs and .entries: jobs and their entries, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from indexer.catalog import Catalog, EntryState, JobKind, JobStatus


def test_job_entries_are_chunked_and_counted_from_rows(catalog_url):
    with Catalog.open(catalog_url) as catalog:
        entries = [{"kind": "url", "location": f"http://x/{n}.jpg"} for n in range(10)]
        job = catalog.create_job(JobKind.INGEST, source="/m.csv", entries=entries, chunk_size=4,
                                 removals=[{"location": "http://x/old.jpg", "item_id": "cd" * 32}])
        assert (job.total, job.chunks, job.status) == (10, 3, "queued")
        assert [len(catalog.job_entries(job.id, chunk=c)) for c in range(3)] == [4, 4, 2]
        first, second = catalog.job_entries(job.id, chunk=0)[:2]
        catalog.add_item("ab" * 32, source="/m.csv")
        catalog.finish_entry(first.id, EntryState.DONE, item_id="ab" * 32)
        catalog.finish_entry(second.id, EntryState.FAILED, error="HTTP 404", permanent=True)
        # A duplicate delivery finishing second changes nothing.
        catalog.finish_entry(second.id, EntryState.DONE, item_id="ab" * 32)
        fetches, removals, items = catalog.job_counts(job.id)
        assert fetches == {"pending": 8, "done": 1, "failed": 1}
        assert removals == {"pending": 1, "removed": 0, "kept": 0}
        assert items["stored"] == 1
        assert catalog.job_failures(job.id) == [("http://x/1.jpg", "HTTP 404")]
        assert catalog.job_chunks(job.id, ["pending"]) == [0, 1, 2]
        assert catalog.job_chunks_with_items(job.id, ["stored"]) == [0]
        assert catalog.reset_failed_entries(job.id) == 1
        assert catalog.job_counts(job.id)[0] == {"pending": 9, "done": 1, "failed": 0}
        assert catalog.set_job_status(job.id, JobStatus.RUNNING)
        assert catalog.get_job(job.id).started_at is not None
        assert not catalog.set_job_status(job.id, JobStatus.DONE, only_from=["queued"])
        with pytest.raises(ValueError, match="expected one of"):
            catalog.set_job_status(job.id, "exploded")

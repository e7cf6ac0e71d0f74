"""indexer.jobs.sweep: the work of stalled jobs is listed again, once per quiet period."""

from __future__ import annotations

from jobs_harness import serve_images, write_manifest

from indexer import jobs


def test_stalled_jobs_get_their_unfinished_stages_queued_again(engine, shop, tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(12)))
    job = jobs.submit_source(engine.catalog, engine.settings, manifest)
    intake = jobs.Intake.from_settings(engine.settings, engine.catalog)
    jobs.fetch_chunk(intake, job.id, 0)  # chunk 0 stored, never embedded; chunk 1 never fetched
    assert jobs.stalled_work(engine.catalog, stalled_after=3600) == []
    work = jobs.stalled_work(engine.catalog, stalled_after=0)
    assert work == [jobs.Work("fetch", job.id, 1), jobs.Work("embed", job.id, 0),
                    jobs.Work("index", job.id)]
    assert jobs.stalled_work(engine.catalog, stalled_after=60) == []  # touched: not again soon

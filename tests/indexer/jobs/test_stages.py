"""indexer.jobs.stages: fetch, embed and index stages, each idempotent, on one job."""

from __future__ import annotations

import threading

import images_factory
import pytest
from jobs_harness import make_settings, serve_images, vector_counts, write_manifest
from local_http import responder

from indexer import jobs
from indexer.engine import Lookalike


def test_a_manifest_job_ends_searchable_and_keeps_every_failure_with_its_reason(
    engine, shop, tmp_path
):
    urls = serve_images(shop, range(20))
    shop.serve("/page.jpg", b"<html><body>not a picture</body></html>", "text/html")
    shop.serve("/empty.jpg", b"", "image/jpeg")
    shop.serve("/text.jpg", b"hello, I am text pretending" * 10, "image/jpeg")
    shop.serve("/huge.jpg", b"\xff\xd8\xff" + b"\0" * 300_000, "image/jpeg")
    shop.redirect("/inside.jpg", "http://10.1.2.3/secret.jpg")
    shop.route("/flaky.jpg", responder(503))
    hostile = [shop.url(p) for p in
               ("/page.jpg", "/empty.jpg", "/text.jpg", "/huge.jpg", "/inside.jpg", "/flaky.jpg",
                "/missing.jpg")]
    manifest = write_manifest(tmp_path / "m.csv", urls + hostile)

    job = jobs.submit_source(engine.catalog, engine.settings, manifest)
    assert (job.total, job.chunks) == (27, 4)
    state = jobs.run_inline(engine, job.id)
    assert state.job.status == "done"
    assert state.items["indexed"] == 20 and state.failed == 7
    reasons = dict(state.failures)
    assert "text/html" in reasons[shop.url("/page.jpg")]
    assert reasons[shop.url("/empty.jpg")] == "empty body"
    assert "exceeds" in reasons[shop.url("/huge.jpg")]
    assert "10.1.2.3" in reasons[shop.url("/inside.jpg")]
    assert reasons[shop.url("/flaky.jpg")] == "HTTP 503"
    assert reasons[shop.url("/missing.jpg")] == "HTTP 404"
    assert reasons[shop.url("/text.jpg")]  # sniffed: not an image
    assert state.fetches == {"pending": 0, "done": 20, "failed": 7}
    assert vector_counts(engine) == (20, 20, 20)
    hits = engine.search(images_factory.jpeg_bytes(seed=13), k=3)
    assert hits[0].item.product_id == "p13" and hits[0].score == pytest.approx(1.0, abs=1e-3)

    # Retry fetches the failed URLs only; the one fixed since then now works.
    shop.serve("/flaky.jpg", images_factory.jpeg_bytes(seed=500))
    before = len(shop.requests)
    assert jobs.retry_failed(engine.catalog, job.id) == [2, 3]
    state = jobs.run_inline(engine, job.id)
    retried = sorted({r.path for r in shop.requests[before:]})
    assert retried == sorted(p for p in
                             ("/page.jpg", "/empty.jpg", "/text.jpg", "/huge.jpg", "/inside.jpg",
                              "/flaky.jpg", "/missing.jpg"))
    assert (state.job.status, state.items["indexed"], state.failed) == ("done", 21, 6)
    assert vector_counts(engine) == (21, 21, 21)


def test_every_stage_run_twice_or_at_once_leaves_one_vector_per_item(
    tmp_path, tiny_model, shop, catalog_url
):
    settings = make_settings(tmp_path, tiny_model, database_url=catalog_url)
    manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(24)))
    with Lookalike.open(settings) as engine:
        job = jobs.submit_source(engine.catalog, settings, manifest)
        intake = jobs.Intake.from_settings(settings, engine.catalog)
        chunks = jobs.start_job(engine.catalog, job.id)
        assert chunks == [0, 1, 2]
        for chunk in chunks:  # the same delivery twice at once, then once more
            threads = [threading.Thread(target=jobs.fetch_chunk, args=(intake, job.id, chunk))
                       for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert jobs.fetch_chunk(intake, job.id, chunk).skipped == 1
        for chunk in chunks:
            assert jobs.embed_chunk(engine, job.id, chunk) == 8
            assert jobs.embed_chunk(engine, job.id, chunk) == 0
        jobs.index_job(engine, job.id)
        # A chunk embedded again after indexing (a redelivered embed task) and indexed again.
        engine.catalog.mark_embedded([i.id for i in engine.catalog.job_items(job.id, 0)],
                                     engine.model.version)
        engine.embed_items(engine.catalog.job_items(job.id, 0))
        jobs.index_job(engine, job.id)
        assert jobs.index_job(engine, job.id).finished
        assert 24 <= len(shop.requests) <= 48  # the two at once may both download
        assert vector_counts(engine) == (24, 24, 24)
        assert len(engine.catalog.job_entries(job.id)) == 24


def test_an_item_deleted_while_its_chunk_is_embedded_leaves_no_vector_behind(
    engine, shop, tmp_path, monkeypatch
):
    # The API deletes an item the embed stage has read but not yet written, and the index
    # writer purges its row at once: the vector written afterwards must not outlive it
    # (nor enter the index a later re-index builds from the vector store).
    manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(8)))
    job = jobs.submit_source(engine.catalog, engine.settings, manifest)
    intake = jobs.Intake.from_settings(engine.settings, engine.catalog)
    assert jobs.start_job(engine.catalog, job.id) == [0]
    jobs.fetch_chunk(intake, job.id, 0)
    doomed = engine.catalog.job_items(job.id, 0)[3]
    embed_paths = engine.embedder.embed_paths

    def deleted_meanwhile(paths, progress=False):
        assert engine.mark_deleted([doomed.id]) == 1  # what the API does
        assert jobs.apply_deletions(engine) == 1  # the index writer: its row is gone
        yield from embed_paths(paths, progress=progress)

    monkeypatch.setattr(engine.embedder, "embed_paths", deleted_meanwhile)
    assert jobs.embed_chunk(engine, job.id, 0) == 7
    monkeypatch.undo()
    assert jobs.index_job(engine, job.id).finished
    assert vector_counts(engine) == (7, 7, 7)
    engine.build_index()  # a re-index reads the vector store
    assert vector_counts(engine) == (7, 7, 7)
    assert engine.catalog.get(doomed.id) is None

"""indexer.jobs.submit: a manifest's or a crawled site's job, and what its re-crawl finds."""

from __future__ import annotations

import images_factory
import pytest
from jobs_harness import build_site, product_page, serve_images, vector_counts, write_manifest
from local_http import responder

from indexer import jobs
from indexer.catalog import JobKind


def test_recrawl_finds_new_changed_and_removed_images(engine, shop, tmp_path):
    urls = serve_images(shop, range(10))
    urls.append(shop.url("/dup.jpg"))  # the same picture as /img/3.jpg at a second URL
    shop.serve("/dup.jpg", images_factory.jpeg_bytes(seed=3))
    manifest = write_manifest(tmp_path / "m.csv", urls)
    first = jobs.submit_source(engine.catalog, engine.settings, manifest)
    assert jobs.run_inline(engine, first.id).job.status == "done"
    assert vector_counts(engine) == (10, 10, 10)
    old = {e.location: e.item_id for e in engine.catalog.job_entries(first.id)}

    shop.serve("/img/4.jpg", images_factory.jpeg_bytes(seed=444))  # changed picture
    shop.route("/img/5.jpg", responder(404))  # gone from the site
    kept = [u for u in urls if not u.endswith(("/img/0.jpg", "/img/3.jpg"))]  # 0, 3 delisted
    kept += serve_images(shop, [100, 101])  # new
    write_manifest(manifest, kept)
    again = jobs.submit_source(engine.catalog, engine.settings, manifest, kind=JobKind.RECRAWL)
    state = jobs.run_inline(engine, again.id)
    assert state.job.status == "done"
    # Gone: 0 (delisted), the old 4 (changed), 5 (404). 3 is delisted but /dup.jpg still
    # shows the same picture, so its item stays.
    assert state.removals == {"pending": 0, "removed": 3, "kept": 1}
    assert engine.catalog.get(old[urls[0]]) is None
    assert engine.catalog.get(old[urls[4]]) is None
    assert engine.catalog.get(old[urls[5]]) is None
    assert engine.catalog.get(old[urls[3]]) is not None
    assert vector_counts(engine) == (10, 10, 10)  # 10 - 3, + the new 4, 100 and 101
    hits = engine.search(images_factory.jpeg_bytes(seed=444), k=1)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)

    # Nothing changed since: a third run fetches everything, removes nothing.
    third = jobs.submit_source(engine.catalog, engine.settings, manifest, kind=JobKind.RECRAWL)
    state = jobs.run_inline(engine, third.id)
    assert state.removals == {"pending": 0, "removed": 0, "kept": 0}
    assert vector_counts(engine) == (10, 10, 10)


def test_a_crawled_site_and_its_recrawl_new_changed_removed_and_unverified(engine, shop):
    build_site(shop, {1: 1, 2: 2, 3: 3})
    start = shop.url("/")
    first = jobs.submit_source(engine.catalog, engine.settings, start)
    assert not first.planned and first.total == 0
    assert not jobs.finalize(engine.catalog, first.id)  # nothing to finish before the crawl
    state = jobs.run_inline(engine, first.id)
    assert (state.job.status, state.job.total, state.items["indexed"]) == ("done", 3, 3)
    assert state.job.message.startswith("crawled 4 pages, 3 images")
    item = engine.search(images_factory.jpeg_bytes(seed=2), k=1)[0].item
    assert (item.page_url, item.title) == (shop.url("/p/2.html"), "Product 2")
    old = {e.location: e.item_id for e in engine.catalog.job_entries(first.id)}

    shop.serve("/img/p2.jpg", images_factory.jpeg_bytes(seed=22))  # changed
    shop.route("/p/3.html", responder(404))  # the product is gone for good
    shop.route("/p/1.html", responder(503))  # down for now: its image must stay
    shop.serve("/p/4.html", product_page(4, "/img/p4.jpg"), "text/html")  # new
    shop.serve("/img/p4.jpg", images_factory.jpeg_bytes(seed=4))
    links = "".join(f'<a href="/p/{n}.html">p</a>' for n in (1, 2, 3, 4))
    shop.serve("/", f"<html><body>{links}</body></html>".encode(), "text/html")
    again = jobs.submit_source(engine.catalog, engine.settings, start, kind=JobKind.RECRAWL)
    state = jobs.run_inline(engine, again.id)
    assert state.job.status == "done"
    assert "2 pages failed" in state.job.message and "HTTP 503" in state.job.message
    assert state.removals["removed"] == 2  # p3 (page gone) and the old p2 (changed)
    assert engine.catalog.get(old[shop.url("/img/p1.jpg")]) is not None  # unverified: kept
    assert engine.catalog.get(old[shop.url("/img/p3.jpg")]) is None
    assert engine.catalog.get(old[shop.url("/img/p2.jpg")]) is None
    assert vector_counts(engine) == (3, 3, 3)  # p1, the new p2, p4


def test_a_job_recorded_failed_before_it_was_queued_is_never_started(engine, shop, tmp_path):
    """A sender gave up on a hung broker and failed the job; its message came late."""
    manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(3)))
    job = jobs.submit_source(engine.catalog, engine.settings, manifest)
    engine.catalog.set_job_status(job.id, "failed", message="not queued: the broker hung")
    state = jobs.run_inline(engine, job.id)  # the late message's stages, in one go
    assert state.job.status == "failed" and state.job.message == "not queued: the broker hung"
    assert state.fetches == {"pending": 3, "done": 0, "failed": 0}
    assert sum(engine.catalog.counts().values()) == 0  # nothing taken in

"""indexer.jobs and the catalog's job records, in one process (the workers run the same stages).

A real HTTP server serves generated images; the model is timm's tiny
``test_efficientnet`` with random weights (milliseconds per image), saved as a
model directory. Catalog-level tests run on SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import faiss
import images_factory
import numpy as np
import pytest
import redis
import sqlalchemy as sa
import torch
from local_http import LocalServer, responder
from training_factory import write_tiny_model

from indexer import jobs
from indexer.catalog import (
    SCHEMA_VERSION,
    Catalog,
    EntryState,
    JobKind,
    JobStatus,
    create_catalog_engine,
    metadata,
    schema_version_table,
    utcnow,
)
from indexer.config import Settings
from indexer.engine import Lookalike
from indexer.index.errors import NothingToRollBack
from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.modeldir import EmbeddingModel, save_model_dir

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """timm's test_efficientnet, random weights, 256-d pooled features: a real model, fast."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def shop():
    with LocalServer() as server:
        yield server


def serve_images(server: LocalServer, seeds, prefix: str = "/img") -> list[str]:
    urls = []
    for seed in seeds:
        server.serve(f"{prefix}/{seed}.jpg", images_factory.jpeg_bytes(seed=seed))
        urls.append(server.url(f"{prefix}/{seed}.jpg"))
    return urls


def write_manifest(path: Path, urls: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_url", "product_id"])
        for number, url in enumerate(urls):
            writer.writerow([url, f"p{number}"])
    return path


def make_settings(tmp_path: Path, tiny_model: Path, **overrides) -> Settings:
    values = dict(
        home=tmp_path / "home", model=str(tiny_model), device="cpu", precision="fp32",
        loader_workers=0, batch_size=16, fetch_allow_networks=["127.0.0.0/8"],
        fetch_per_host_interval=0, fetch_respect_robots=False, fetch_retries=0,
        ingest_chunk_size=8, ingest_threads=2, fetch_max_bytes=200_000, _env_file=None,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def engine(tmp_path, tiny_model):
    with Lookalike.open(make_settings(tmp_path, tiny_model)) as opened:
        yield opened


def vector_counts(engine: Lookalike) -> tuple[int, int, int]:
    """(live vectors in the store, vectors in the current index, indexed catalog items)."""
    ids, _ = engine.vectors.load()
    assert len(np.unique(ids)) == len(ids)
    loaded = engine.indexes.load()
    index_ids = np.concatenate([faiss.vector_to_array(shard.id_map) for shard in loaded.shards])
    assert len(np.unique(index_ids)) == len(index_ids), "a vector id appears twice in the index"
    assert set(index_ids) == set(ids)
    return len(ids), loaded.ntotal, engine.catalog.counts()["indexed"]


# -- the catalog: jobs tables on SQLite and PostgreSQL ----------------------------


def test_a_version_1_catalog_is_migrated_and_keeps_its_items(catalog_url):
    engine = create_catalog_engine(catalog_url, poolclass=sa.pool.NullPool)
    v1_tables = [t for name, t in metadata.tables.items()
                 if name in ("schema_version", "items", "fetches")]
    with engine.begin() as conn:
        metadata.create_all(conn, tables=v1_tables)
        conn.execute(schema_version_table.insert().values(id=1, version=1, updated_at=utcnow()))
    engine.dispose()
    with Catalog.open(catalog_url) as catalog:
        catalog.add_item("ab" * 32, source="/s")
        assert catalog.schema_version() == SCHEMA_VERSION == 2
        job = catalog.create_job(JobKind.INGEST, source="/s",
                                 entries=[{"kind": "url", "location": "http://x/1.jpg"}])
        assert catalog.get_job(job.id).total == 1
    with Catalog.open(catalog_url) as again:  # opening a current catalog changes nothing
        assert again.schema_version() == 2 and again.get("ab" * 32) is not None


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


# -- ingest: fetch, store, embed, index -------------------------------------------


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
    assert engine.catalog.fetch_counts() == {"pending": 0, "done": 20, "failed": 7}
    assert vector_counts(engine) == (20, 20, 20)
    hits = engine.search_image(images_factory.jpeg_bytes(seed=13), k=3)
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
    hits = engine.search_image(images_factory.jpeg_bytes(seed=444), k=1)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)

    # Nothing changed since: a third run fetches everything, removes nothing.
    third = jobs.submit_source(engine.catalog, engine.settings, manifest, kind=JobKind.RECRAWL)
    state = jobs.run_inline(engine, third.id)
    assert state.removals == {"pending": 0, "removed": 0, "kept": 0}
    assert vector_counts(engine) == (10, 10, 10)


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


# -- re-index -----------------------------------------------------------------------


@pytest.fixture
def indexed(engine, shop, tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(16)))
    job = jobs.submit_source(engine.catalog, engine.settings, manifest)
    assert jobs.run_inline(engine, job.id).job.status == "done"
    return engine


def test_reindex_writes_a_new_version_keeps_the_previous_and_rolls_back(indexed):
    engine = indexed
    before = engine.indexes.current_version()
    job = jobs.new_reindex_job(engine.catalog)
    outcome = jobs.reindex(engine, job.id, keep=2)
    assert outcome.status == "done" and outcome.version != before
    assert engine.catalog.get_job(job.id).status == "done"
    assert engine.indexes.current_version() == outcome.version
    assert vector_counts(engine) == (16, 16, 16)
    assert engine.indexes.rollback(expected_model_version=engine.model.version) == before
    assert engine.indexes.load().ntotal == 16


@pytest.mark.parametrize("lock", ["flock", "redis"])
def test_two_reindexes_started_together_one_runs_the_other_says_it_is_running(
    indexed, monkeypatch, lock
):
    from indexer.locks import reindex_lock_factory

    engine = indexed
    prefix = f"lookalike-test-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # a missing Redis fails the test, never skips it
    settings = engine.settings.model_copy(
        update={"redis_url": REDIS_URL if lock == "redis" else None, "broker_key_prefix": prefix}
    )
    factory = reindex_lock_factory(settings)
    assert (factory is None) == (lock == "flock")
    building, release = threading.Event(), threading.Event()
    real_build = type(engine.indexes).build

    def slow_build(self, *args, **kwargs):
        building.set()
        assert release.wait(30)
        return real_build(self, *args, **kwargs)

    monkeypatch.setattr(type(engine.indexes), "build", slow_build)
    versions_before = set(engine.indexes.list_versions())
    first_job, second_job = (jobs.new_reindex_job(engine.catalog) for _ in range(2))
    outcomes = {}
    first = threading.Thread(
        target=lambda: outcomes.update(first=jobs.reindex(engine, first_job.id, lock=factory))
    )
    first.start()
    try:
        assert building.wait(30)
        outcomes["second"] = jobs.reindex(engine, second_job.id, lock=factory)
    finally:
        release.set()
        first.join(60)
    assert outcomes["first"].status == "done"
    assert outcomes["second"].status == "skipped"
    assert "already running" in outcomes["second"].message
    if lock == "redis":
        assert "Redis lock" in outcomes["second"].message
        assert client.get(f"{prefix}reindex-lock") is None  # released
    skipped = engine.catalog.get_job(second_job.id)
    assert skipped.status == "skipped" and "already running" in skipped.message
    assert len(set(engine.indexes.list_versions()) - versions_before) == 1


CRASH_BEFORE_SWITCH = textwrap.dedent("""
    import json, os, sys
    from indexer import jobs
    from indexer.config import Settings
    from indexer.engine import Lookalike
    from indexer.index.store import IndexStore

    def crash(self, version):  # the new version is complete on disk; CURRENT not yet moved
        os._exit(9)

    IndexStore.activate = crash
    engine = Lookalike(Settings(**json.loads(sys.argv[1]), _env_file=None))
    jobs.reindex(engine, int(sys.argv[2]))
""")


def test_a_crash_between_writing_a_version_and_switching_to_it_loses_nothing(indexed, tmp_path):
    engine = indexed
    live = engine.indexes.current_version()
    job = jobs.new_reindex_job(engine.catalog)
    config = engine.settings.model_dump(mode="json", include={
        "home", "model", "device", "precision", "loader_workers", "batch_size"})
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_SWITCH, json.dumps(config), str(job.id)],
        capture_output=True, text=True, timeout=120,
    )
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    orphans = set(engine.indexes.list_versions()) - {live}
    assert len(orphans) >= 1  # written in full, never switched to
    assert engine.indexes.current_version() == live
    assert engine.search_image(images_factory.jpeg_bytes(seed=5), k=1)[0].item.product_id == "p5"
    assert engine.catalog.get_job(job.id).status == "running"  # what the sweeper finds
    assert jobs.Work("reindex", job.id) in jobs.stalled_work(engine.catalog, stalled_after=0)

    outcome = jobs.reindex(engine, job.id, keep=2)  # the sweeper's redo of the same job
    assert outcome.status == "done"
    assert engine.indexes.current_version() == outcome.version
    assert not orphans & set(engine.indexes.list_versions())  # the orphan was pruned
    assert vector_counts(engine) == (16, 16, 16)


def test_after_a_model_change_jobs_wait_for_the_reindex_that_re_embeds_everything(
    indexed, shop, tmp_path
):
    torch.manual_seed(1)
    backbone = build_backbone("test_efficientnet").eval()
    other = EmbeddingModel(backbone, architecture="test_efficientnet",
                           data_config=backbone_data_config(backbone))
    save_model_dir(tmp_path / "other", other, version="tiny-other")
    changed = indexed.settings.model_copy(update={"model": str(tmp_path / "other")})
    with Lookalike.open(changed) as engine:
        # The incremental writer never mixes models: a new job waits for the re-index.
        manifest = write_manifest(tmp_path / "new.csv", serve_images(shop, [70, 71], "/new"))
        job = jobs.submit_source(engine.catalog, changed, manifest)
        state = jobs.run_inline(engine, job.id)
        assert state.job.status == "running" and state.items["embedded"] == 2
        assert jobs.index_job(engine, job.id).needs_reindex
        assert engine.indexes.load().model_version == "tiny-test"

        outcome = jobs.reindex(engine, jobs.new_reindex_job(engine.catalog).id)
        assert outcome.status == "done" and outcome.reembedded == 16
        assert engine.indexes.load().model_version == "tiny-other"
        assert jobs.index_job(engine, job.id).finished
        assert vector_counts(engine) == (18, 18, 18)
        with pytest.raises(NothingToRollBack):  # the earlier versions hold the old model
            engine.indexes.rollback(expected_model_version="tiny-other")


# -- crawling a site ------------------------------------------------------------------


def product_page(n: int, image: str) -> bytes:
    return (
        f'<!DOCTYPE html><html><head><title>Product {n}</title>'
        f'<meta property="og:type" content="product"><meta property="og:image" content="{image}">'
        f"</head><body><h1>Product {n}</h1><a href=\"/\">home</a></body></html>"
    ).encode()


def build_site(server: LocalServer, products: dict[int, int]) -> None:
    """``products``: number -> image seed; the home page links every product page."""
    links = "".join(f'<a href="/p/{n}.html">product {n}</a>' for n in products)
    server.serve("/", f"<!DOCTYPE html><html><body>{links}</body></html>".encode(),
                 "text/html")
    for n, seed in products.items():
        server.serve(f"/p/{n}.html", product_page(n, f"/img/p{n}.jpg"), "text/html")
        server.serve(f"/img/p{n}.jpg", images_factory.jpeg_bytes(seed=seed))


def test_a_crawled_site_and_its_recrawl_new_changed_removed_and_unverified(engine, shop):
    build_site(shop, {1: 1, 2: 2, 3: 3})
    start = shop.url("/")
    first = jobs.submit_source(engine.catalog, engine.settings, start)
    assert not first.planned and first.total == 0
    assert not jobs.finalize(engine.catalog, first.id)  # nothing to finish before the crawl
    state = jobs.run_inline(engine, first.id)
    assert (state.job.status, state.job.total, state.items["indexed"]) == ("done", 3, 3)
    assert state.job.message.startswith("crawled 4 pages, 3 images")
    item = engine.search_image(images_factory.jpeg_bytes(seed=2), k=1)[0].item
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

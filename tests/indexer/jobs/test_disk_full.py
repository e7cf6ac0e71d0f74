"""Disk full while writing an index version: the data directory's index on a real, small tmpfs.

The kernel answers ENOSPC while the new version's shard is written. The old version
keeps serving and the partial version and its temp files are gone. A re-index job
(:mod:`indexer.jobs.reindex`) is failed with a reason naming the full disk and
succeeds when run again with space; an ingest job's index stage
(:func:`indexer.jobs.index_job`) records the reason, stays unfinished with its
items embedded, and finishes when the stage runs again with space.
"""

from __future__ import annotations

import images_factory
import pytest
from jobs_harness import make_settings, serve_images, vector_counts, write_manifest
from small_filesystem import fill, small_filesystem

from indexer import jobs
from indexer.engine import Lookalike
from indexer.images import content_id
from indexer.index.errors import IndexDiskFullError

# Room for a few versions of 16 tiny-model vectors (~17 KB a shard), not for a ballast too.
FILESYSTEM_BYTES = 1 << 20
INDEX_FILES = {"CURRENT", "HISTORY", ".lock", ".reindex.lock"}


@pytest.fixture
def engine_on_small_disk(tmp_path, tiny_model, shop):
    settings = make_settings(tmp_path, tiny_model)
    with small_filesystem(settings.index_dir, FILESYSTEM_BYTES):
        with Lookalike.open(settings) as engine:
            manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(16)))
            job = jobs.submit_source(engine.catalog, settings, manifest)
            assert jobs.run_inline(engine, job.id).job.status == "done"
            yield engine


def test_disk_full_while_writing_an_index_version_keeps_the_old_one_and_fails_the_job(
    engine_on_small_disk,
):
    engine = engine_on_small_disk
    index_dir = engine.settings.index_dir
    live = engine.indexes.current_version()
    assert engine.search(images_factory.jpeg_bytes(seed=5), k=1)[0].item.product_id == "p5"
    ballast = fill(index_dir, leave=4096)  # less than one shard file

    job = jobs.new_reindex_job(engine.catalog)
    with pytest.raises(IndexDiskFullError) as raised:
        jobs.reindex(engine, job.id)
    assert raised.value.__cause__.errno == 28  # ENOSPC, from the kernel

    recorded = engine.catalog.get_job(job.id)
    assert recorded.status == "failed"
    assert "disk full" in recorded.message and "No space left on device" in recorded.message
    assert live in recorded.message  # what still serves
    assert engine.indexes.current_version() == live
    assert engine.indexes.list_versions() == [live]
    leftovers = {p.name for p in index_dir.iterdir()} - INDEX_FILES - {live, ballast.name}
    assert leftovers == set()  # no partial version directory, no temp file
    assert sorted(p.name for p in (index_dir / live).iterdir()) == [
        "manifest.json", "shard-00.faiss"
    ]  # fmt: skip
    # The old version still serves: this engine, and a fresh one on the same data directory.
    assert engine.search(images_factory.jpeg_bytes(seed=5), k=1)[0].item.product_id == "p5"
    with Lookalike.open(engine.settings) as fresh:
        hit = fresh.search(images_factory.jpeg_bytes(seed=7), k=1)[0]
        assert hit.item.product_id == "p7"
    assert vector_counts(engine) == (16, 16, 16)

    ballast.unlink()  # space again: the same job, run again, succeeds and switches
    outcome = jobs.reindex(engine, job.id)
    assert outcome.status == "done" and outcome.version not in (None, live)
    assert engine.catalog.get_job(job.id).status == "done"
    assert engine.indexes.current_version() == outcome.version
    assert engine.search(images_factory.jpeg_bytes(seed=5), k=1)[0].item.product_id == "p5"
    assert engine.searcher().version == outcome.version
    assert vector_counts(engine) == (16, 16, 16)


def test_disk_full_in_an_ingest_index_stage_keeps_the_items_and_finishes_when_run_again(
    engine_on_small_disk, shop, tmp_path
):
    engine = engine_on_small_disk
    live = engine.indexes.current_version()
    ballast = fill(engine.settings.index_dir, leave=4096)
    manifest = write_manifest(tmp_path / "more.csv", serve_images(shop, range(16, 24)))
    job = jobs.submit_source(engine.catalog, engine.settings, manifest)

    with pytest.raises(IndexDiskFullError):
        jobs.run_inline(engine, job.id)
    state = jobs.progress(engine.catalog, job.id)
    assert state.job.status == "running"  # unfinished, not lost: the sweeper redoes it
    assert state.job.message.startswith("index stage failed") and "disk full" in state.job.message
    assert state.items["embedded"] == 8 and state.items["indexed"] == 0
    assert engine.indexes.current_version() == live and engine.indexes.list_versions() == [live]
    assert engine.search(images_factory.jpeg_bytes(seed=5), k=1)[0].item.product_id == "p5"
    assert jobs.Work("index", job.id) in jobs.stalled_work(engine.catalog, stalled_after=0)

    ballast.unlink()
    outcome = jobs.index_job(engine, job.id)  # the sweeper's redo of the stage
    assert outcome.finished and outcome.version != live
    state = jobs.progress(engine.catalog, job.id)
    assert state.job.status == "done" and state.job.message == ""
    assert state.items["indexed"] == 8
    assert vector_counts(engine) == (24, 24, 24)
    photo = images_factory.jpeg_bytes(seed=20)  # one of the new items, found in the index
    assert engine.search(photo, k=1)[0].item.id == content_id(photo)

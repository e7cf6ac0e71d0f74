"""indexer.jobs.reindex: new versions, one re-index at a time, crashes, model changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid

import images_factory
import pytest
import redis
import torch
from jobs_harness import serve_images, vector_counts, write_manifest

from indexer import jobs
from indexer.engine import Lookalike
from indexer.index.errors import NothingToRollBack
from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.modeldir import EmbeddingModel, save_model_dir

REDIS_URL = os.environ.get("LOOKALIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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

    def crash(self, version, gone):  # the new version is complete on disk; CURRENT not moved
        os._exit(9)

    IndexStore.activate_without = crash
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
    assert engine.search(images_factory.jpeg_bytes(seed=5), k=1)[0].item.product_id == "p5"
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

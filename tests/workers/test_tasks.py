"""The tasks' wiring, run eagerly in this process: each task calls indexer.jobs with ids and
passes the baton to the next stage; beat's tasks (re-crawl, re-index, sweep) do their part."""

from __future__ import annotations

import pytest

from indexer import jobs
from indexer.catalog import JobKind
from indexer.engine import Lookalike
from workers.app import create_app
from workers.names import TASK_NAMES
from workers.state import state_of


@pytest.fixture
def eager(make_setup):
    apps = []

    def build(**values):
        setup = make_setup(**values)
        app = create_app(setup.settings)
        app.conf.task_always_eager = True
        app.conf.task_eager_propagates = True
        apps.append(app)
        return setup, app

    yield build
    for app in apps:  # each app opened its own catalog and engine
        state_of(app).close()


def run(app, task: str, *args, **kwargs):
    return app.tasks[TASK_NAMES[task]].apply(args=args, kwargs=kwargs).get()


def test_start_job_runs_fetch_embed_and_index_for_every_chunk(eager, shop, tmp_path):
    setup, app = eager()
    manifest = shop.manifest(tmp_path / "m.csv", range(30))
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, manifest)
        assert run(app, "start", job.id) == 2
        state = jobs.progress(catalog, job.id)
    assert state.job.status == "done" and state.items["indexed"] == 30
    assert run(app, "start", job.id) == 0  # delivered again: nothing left to do


def test_beat_recrawl_resubmits_registered_sources_that_are_due(eager, shop, tmp_path):
    setup, app = eager(recrawl_interval=3600)
    manifest = shop.manifest(tmp_path / "m.csv", range(5))
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, manifest)
        assert run(app, "recrawl") == []  # its first job has not finished: not due
        run(app, "start", job.id)
        assert run(app, "recrawl") == []  # finished just now: due in an hour
    setup, app = eager(recrawl_interval=0.001)
    with setup.catalog() as catalog:
        shop.manifest(manifest, range(3, 8))  # 0-2 gone, 5-7 new
        (again,) = run(app, "recrawl")
        state = jobs.progress(catalog, again)
        assert (state.job.kind, state.job.status) == ("recrawl", "done")
        assert state.removals["removed"] == 3 and state.items["indexed"] == 5
        manifest.unlink()  # a source that vanished gets a failed job saying why
        previous = catalog.jobs(limit=1)[0]
        run(app, "recrawl")
        latest = catalog.jobs(limit=1)[0]
        assert latest.id != previous.id and latest.status == "failed"
        assert "not a folder, a manifest" in latest.message


def test_beat_reindex_records_a_job_and_a_second_one_at_once_is_skipped(eager, shop, tmp_path):
    setup, app = eager(reindex_interval=3600)
    manifest = shop.manifest(tmp_path / "m.csv", range(10))
    with setup.catalog() as catalog:
        run(app, "start", jobs.submit_source(catalog, setup.settings, manifest).id)
        result = run(app, "reindex")  # as beat sends it: no job yet
        job = catalog.get_job(result["job"])
        assert (job.kind, job.status) == (JobKind.REINDEX, "done")
        assert "10 vectors" in job.message
        # A second beat sending the same tick: that work is done already.
        assert run(app, "reindex") == {"job": None, "status": "skipped"}
        assert len(catalog.jobs(kind=JobKind.REINDEX)) == 1
        with Lookalike.open(setup.settings) as engine, engine.indexes.reindex_lock():
            held = jobs.new_reindex_job(catalog)
            skipped = run(app, "reindex", job_id=held.id)
        assert skipped["status"] == "skipped"
        assert catalog.get_job(held.id).status == "skipped"


def test_sweep_queues_the_work_of_a_stalled_job_again(eager, shop, tmp_path):
    setup, app = eager(stalled_after=600)
    manifest = shop.manifest(tmp_path / "m.csv", range(12))
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, manifest)  # its start message "lost"
        assert run(app, "sweep") == 0  # not stalled yet
        assert run(app, "sweep", stalled_after=0) == 2  # fetch chunk 0, index
        assert jobs.progress(catalog, job.id).job.status == "done"


def test_after_a_model_change_the_index_task_queues_one_reindex_that_finishes_the_job(
    eager, shop, tmp_path
):
    import torch

    from indexer.model.backbone import backbone_data_config, build_backbone
    from indexer.model.modeldir import EmbeddingModel, save_model_dir

    setup, app = eager()
    with setup.catalog() as catalog:
        first = jobs.submit_source(catalog, setup.settings, shop.manifest(tmp_path / "a.csv",
                                                                          range(8)))
        run(app, "start", first.id)
    torch.manual_seed(7)
    backbone = build_backbone("test_efficientnet").eval()
    save_model_dir(tmp_path / "other", EmbeddingModel(
        backbone, architecture="test_efficientnet", data_config=backbone_data_config(backbone)),
        version="tiny-other")
    setup, app = eager(model=str(tmp_path / "other"))
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, shop.manifest(tmp_path / "b.csv",
                                                                        range(8, 12)))
        run(app, "start", job.id)
        assert jobs.progress(catalog, job.id).job.status == "done"
        (reindexed,) = catalog.jobs(kind=JobKind.REINDEX)
        assert reindexed.status == "done" and "12 vectors of tiny-other" in reindexed.message

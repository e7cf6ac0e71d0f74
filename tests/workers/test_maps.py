"""A real worker computes the map of the index version an ingest job made, on the embed queue."""

from __future__ import annotations

import time

from worker_harness import WAIT, wait_for_job

from indexer import maps
from indexer.index.store import IndexStore
from workers import client


def test_an_index_job_queues_the_map_of_its_new_version(make_setup, shop, procs, tmp_path):
    setup = make_setup()
    settings = setup.settings
    manifest = shop.manifest(tmp_path / "catalogue.csv", range(30))
    with setup.catalog() as catalog:
        job = client.submit(catalog, settings, manifest)
    worker = procs.worker(setup)  # every queue, as `lookalike worker` runs by default
    state = wait_for_job(setup, job.id, procs)
    assert state.job.status == "done" and state.items["indexed"] == 30, procs.logs()

    version = IndexStore.from_settings(settings).current_version()
    deadline = time.monotonic() + WAIT
    while (data := maps.load_map(settings, version)) is None:
        assert time.monotonic() < deadline, f"no map of {version}:\n{procs.logs()}"
        time.sleep(0.2)
    assert data["total"] == data["sampled"] == 30 and data["clusters"] >= 1
    assert {p["product_id"] for p in data["points"]} == {f"p{seed}" for seed in range(30)}
    worker.wait_for("lookalike.map[")  # the worker ran the task by its name
    assert "'computed': True" in worker.text()  # its result line: it computed, not skipped


def test_a_reindex_queues_its_map_and_a_superseded_version_gets_none(make_setup, shop, tmp_path):
    """The tasks run eagerly here: reindex -> map, as the workers chain them."""
    from indexer import jobs
    from workers.app import create_app
    from workers.names import TASK_NAMES
    from workers.state import state_of

    setup = make_setup()
    app = create_app(setup.settings)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        manifest = shop.manifest(tmp_path / "m.csv", range(8))
        with setup.catalog() as catalog:
            job = jobs.submit_source(catalog, setup.settings, manifest)
            app.tasks[TASK_NAMES["start"]].apply(args=(job.id,)).get()
            first = IndexStore.from_settings(setup.settings).current_version()
            assert maps.load_map(setup.settings, first) is not None  # index_job -> map
            reindex = jobs.new_reindex_job(catalog)
            app.tasks[TASK_NAMES["reindex"]].apply(kwargs={"job_id": reindex.id}).get()
        second = IndexStore.from_settings(setup.settings).current_version()
        assert second != first and maps.load_map(setup.settings, second)["total"] == 8
        again = app.tasks[TASK_NAMES["map"]].apply(args=(second,)).get()
        assert again == {"version": second, "computed": False, "points": 8,
                         "seconds": maps.load_map(setup.settings, second)["seconds"]}
        old = app.tasks[TASK_NAMES["map"]].apply(args=(first,)).get()
        assert old == {"version": first, "computed": False, "current": second}
    finally:
        state_of(app).close()

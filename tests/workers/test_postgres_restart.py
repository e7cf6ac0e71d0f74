"""PostgreSQL (the catalog) restarted in the middle of an ingest job, real worker processes.

A private server (never the shared one) is stopped with every session terminated,
left down for a moment and started again while the workers fetch. Tasks that
meet the dead connection or the refused one retry with backoff; pooled
connections are checked before use. The job finishes with every entry
accounted for once, one item and one vector per image, nothing lost.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from postgres_support import PrivatePostgres
from worker_harness import WAIT, vector_state, wait_for_job

from indexer import jobs

IMAGES = 60


@pytest.fixture
def private_postgres():
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


def test_postgres_restarted_in_the_middle_of_a_job_loses_and_duplicates_nothing(
    make_setup, shop, procs, private_postgres, tmp_path
):
    setup = make_setup(database_url=private_postgres.url, ingest_chunk_size=10)
    manifest = shop.manifest(tmp_path / "m.csv", range(IMAGES))
    for path, route in list(shop.server.routes.items()):  # a slow site: the job takes a while
        shop.server.routes[path] = lambda handler, route=route: (time.sleep(0.08), route(handler))
    procs.worker(setup)
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, manifest)
    from workers import client

    client.send(setup.settings, "start", job.id)
    before = wait_for_job(setup, job.id, procs, until=lambda s: s.fetches["done"] >= 15)
    assert before.fetches["done"] < IMAGES  # the restart falls in the middle of the job
    private_postgres.stop("fast")  # every session terminated, as a restart does
    time.sleep(2)  # down for a while: new connections are refused meanwhile
    private_postgres.start()

    state = wait_for_job(setup, job.id, procs, timeout=WAIT)
    assert state.job.status == "done", f"{state.job.message}\n{procs.logs()}"
    assert state.fetches == {"pending": 0, "done": IMAGES, "failed": 0}, procs.logs()
    assert state.items["indexed"] == IMAGES
    with setup.catalog() as catalog:
        entries = catalog.job_entries(job.id)
        assert len(entries) == IMAGES == len({e.location for e in entries})
        assert all(e.state == "done" and e.item_id for e in entries)
        assert len({e.item_id for e in entries}) == IMAGES
        assert sum(catalog.counts().values()) == IMAGES  # one item per image, none twice
        with catalog.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 1
    ids, _, in_index, indexed = vector_state(setup.settings)
    assert len(ids) == len(set(ids)) == IMAGES
    assert len(in_index) == len(set(in_index)) == IMAGES and indexed == IMAGES
    assert "terminating connection due to administrator command" in private_postgres.logs()

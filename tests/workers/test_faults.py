"""Faults with real worker processes: nothing lost, no duplicate vectors.

* A worker killed with SIGKILL in the middle of an embedding batch: with Redis
  the unacknowledged task comes back after the visibility timeout (no sweeper
  running); with the embedded transport the message died with the worker, and
  the sweeper a restarted worker sends finds the job stalled and queues its work.
  Only the pool child killed (the OOM killer's way): the worker rejects the task
  back onto the queue, on the embedded transport too, and a new child redoes it.
* Redis restarted during a job, losing every queued message (no persistence):
  the workers reconnect, beat's sweeper queues the stalled work again.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import pytest
from worker_harness import WAIT, vector_state, wait_for_job

from indexer import jobs

# Starts `lookalike worker` with VectorStore.append patched: the first time, once the
# vectors are on disk but before the catalog marks their items, it stops there (the
# worst moment to die) and leaves a marker for the test to kill it.
STALL_IN_FIRST_BATCH = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from indexer import vectors
    from indexer.cli import main

    marker = Path(os.environ["LOOKALIKE_TEST_MARKER"])
    real_append = vectors.VectorStore.append

    def append(self, ids, batch):
        part = real_append(self, ids, batch)
        if not marker.exists():
            marker.write_text(f"{os.getpid()}\\n" + " ".join(str(i) for i in ids))
            time.sleep(600)
        return part

    vectors.VectorStore.append = append
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("broker", ["redis", "embedded", "embedded-child-only"])
def test_a_worker_killed_in_the_middle_of_an_embed_batch_has_the_batch_redone(
    broker, make_setup, shop, procs, request, tmp_path
):
    if broker == "redis":  # recovery by redelivery alone: the sweeper is off
        values = dict(broker_url=request.getfixturevalue("redis_url"),
                      broker_key_prefix=request.getfixturevalue("redis_prefix"),
                      broker_visibility_timeout=8, task_soft_time_limit=5, task_time_limit=6,
                      reindex_time_limit=7, sweep_interval=0)
    elif broker == "embedded":  # recovery by the sweeper a restarted worker sends
        values = dict(sweep_interval=30, stalled_after=1)
    else:  # recovery by the worker rejecting its dead child's task: no sweeper
        values = dict(sweep_interval=0)
    setup = make_setup(ingest_chunk_size=20, **values)
    marker = tmp_path / "stalled-in-batch"
    manifest = shop.manifest(tmp_path / "m.csv", range(60))
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, manifest)
    from workers import client

    client.send(setup.settings, "start", job.id)

    doomed = procs.worker(setup, launcher=[sys.executable, "-c", STALL_IN_FIRST_BATCH],
                          env={"LOOKALIKE_TEST_MARKER": str(marker)}, name="doomed")
    deadline = time.monotonic() + WAIT
    while not marker.exists():
        assert time.monotonic() < deadline, procs.logs()
        time.sleep(0.05)
    pid, ids_text = marker.read_text().split("\n")
    if broker == "embedded-child-only":
        os.kill(int(pid), signal.SIGKILL)  # the pool child; the worker lives on
    else:
        doomed.kill(signal.SIGKILL)  # the whole worker, main process and children
    in_batch = {int(i) for i in ids_text.split()}
    with setup.catalog() as catalog:
        state = jobs.progress(catalog, job.id)
        assert state.job.status == "running" and state.items["indexed"] < 60
        stored = {i.vector_id for i in catalog.job_items(job.id) if i.status == "stored"}
    assert in_batch <= stored  # vectors written, items never marked: the worst case

    if broker != "embedded-child-only":
        procs.worker(setup, name="restarted")
    state = wait_for_job(setup, job.id, procs)
    assert state.job.status == "done" and state.items["indexed"] == 60, procs.logs()
    ids, appended, in_index, indexed = vector_state(setup.settings)
    assert appended >= 60 + len(in_batch)  # the batch was embedded again...
    assert len(ids) == len(set(ids)) == 60  # ...and still one vector per item
    assert len(in_index) == len(set(in_index)) == 60 and indexed == 60
    recovery = procs.started[-1].text()
    if broker == "embedded":
        assert "queuing again" in recovery  # the sweeper, not a redelivery
    else:
        assert "queuing again" not in recovery  # the broker gave the task back by itself
    if broker == "embedded-child-only":
        assert "WorkerLostError" in recovery


def test_redis_restarted_during_a_job_loses_nothing(make_setup, shop, procs, private_redis,
                                                   tmp_path):
    setup = make_setup(broker_url=private_redis.url, ingest_chunk_size=10, sweep_interval=1,
                       stalled_after=2, broker_visibility_timeout=30, task_soft_time_limit=20,
                       task_time_limit=25, reindex_time_limit=25)
    manifest = shop.manifest(tmp_path / "m.csv", range(100))
    for path, route in list(shop.server.routes.items()):  # a slow site: the job takes a while
        shop.server.routes[path] = lambda handler, route=route: (time.sleep(0.06), route(handler))
    procs.worker(setup)
    procs.beat(setup)
    with setup.catalog() as catalog:
        job = jobs.submit_source(catalog, setup.settings, manifest)
    from workers import client

    client.send(setup.settings, "start", job.id)
    wait_for_job(setup, job.id, procs, until=lambda s: s.fetches["done"] >= 25)
    private_redis.kill()  # every queued message is gone with it
    time.sleep(1.5)
    private_redis.start()
    state = wait_for_job(setup, job.id, procs, timeout=WAIT)
    assert state.job.status == "done", procs.logs()
    assert state.fetches == {"pending": 0, "done": 100, "failed": 0}
    ids, _, in_index, indexed = vector_state(setup.settings)
    assert len(ids) == len(set(ids)) == 100
    assert len(in_index) == len(set(in_index)) == 100 and indexed == 100
    assert "lookalike.sweep" in procs.started[1].text()  # beat sent the sweeper...
    assert "queuing again" in procs.started[0].text()  # ...which found the lost work

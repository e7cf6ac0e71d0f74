"""/metrics under a real gunicorn with two workers: every scrape reports the whole server.

Requests go over fresh connections, so either worker may take each; prometheus_client's
files in the server's directory (one set per worker pid) show which did. Whichever
worker answers a scrape, the counts are the sums over both, also after a worker was
killed and replaced; a server started again in the same directory (after the first was
killed, so that nothing cleaned up) starts from zero.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
from gunicorn_harness import DEPLOY_CONFIG, GUNICORN, children, free_port, wait_until_up
from prometheus_text import samples, value
from worker_harness import LOOKALIKE, WAIT, Proc, Procs, Setup

from indexer.engine import Lookalike

pytestmark = pytest.mark.slow

COUNTED = "/openapi.json"  # the route the tests count: no catalogue, no index, no model
REQUESTS = "lookalike_http_requests_total"


@dataclass
class Server:
    proc: Proc
    base: str
    directory: Path  # the server's multiprocess directory
    scrapes: int = 0  # GET /metrics sent so far (each counted after it answered)

    def get(self, path: str) -> urllib3.BaseHTTPResponse:
        # a new connection each time: gunicorn hands it to whichever worker accepts first
        response = urllib3.request("GET", self.base + path, headers={"Connection": "close"},
                                   retries=False)  # fmt: skip
        assert response.status == 200, (path, response.status, response.data[:500])
        return response

    def scrape(self) -> dict:
        found = samples(self.get("/metrics").data.decode())
        self.scrapes += 1
        return found

    def workers(self) -> set[int]:
        return children(self.proc.popen.pid)

    def counted_by(self) -> set[int]:
        """Pids whose counter file exists: each wrote it on counting its first request."""
        return {int(path.stem.split("_")[1]) for path in self.directory.glob("counter_*.db")}


def start(procs: Procs, setup: Setup, command: list[str]) -> Server:
    settings = setup.settings
    proc = procs.start("api", command, setup.env(), setup.home.parent)
    base = f"http://{settings.api_bind}"
    wait_until_up(urllib3.PoolManager(), base, proc)
    server = Server(proc, base, settings.api_metrics_dir_for(settings.api_bind))
    deadline = time.monotonic() + WAIT
    while len(server.workers()) < settings.api_workers or not server.directory.is_dir():
        assert time.monotonic() < deadline, proc.text()[-4000:]
        time.sleep(0.1)
    return server


def assert_counts(server: Server, counted: int) -> dict:
    found = server.scrape()
    expected = counted or None  # no series before the first request
    assert value(found, REQUESTS, method="GET", route=COUNTED, status="200") == expected
    assert value(found, "lookalike_http_request_duration_seconds_count", route=COUNTED) == expected
    # this scrape is counted once it has answered: all the earlier ones, whoever served them
    assert value(found, REQUESTS, method="GET", route="/metrics", status="200") == (
        server.scrapes - 1 or None
    )
    return found


def test_every_scrape_sums_both_workers_a_killed_worker_s_counts_stay_a_restart_clears(
    make_setup, procs, sample_folder
):
    setup = make_setup(api_bind=f"127.0.0.1:{free_port()}", api_workers=2, api_threads=2)
    with Lookalike.open(setup.settings) as engine:
        engine.ingest(sample_folder)
        engine.embed()
        engine.build_index()
    server = start(procs, setup, [GUNICORN, "-c", DEPLOY_CONFIG])
    workers = server.workers()
    assert len(workers) == 2

    sent = 0
    while not workers <= server.counted_by():  # until both workers have served some
        assert sent < 500, f"one worker took all {sent} connections: {server.counted_by()}"
        server.get(COUNTED)
        sent += 1
    sent += 10
    for _ in range(10):
        server.get(COUNTED)
    for _ in range(8):  # answered by either worker: the same sums every time
        found = assert_counts(server, sent)
        assert value(found, "lookalike_index_vectors") == 12
        assert value(found, "lookalike_model_loaded") == 1

    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while True:  # gunicorn forks a replacement; its app starts with the model not loaded
        newcomers = server.workers() - workers
        started = [pid for pid in newcomers
                   if (server.directory / f"gauge_livemin_{pid}.db").exists()]  # fmt: skip
        if started and value(server.scrape(), "lookalike_model_loaded") == 1:
            break  # livemin: 1 only once the replacement has loaded its model too
        assert time.monotonic() < deadline, server.proc.text()[-4000:]
        time.sleep(0.2)
    (newcomer,) = started
    assert server.workers() == workers - {victim} | {newcomer}

    files = {path.name for path in server.directory.iterdir()}
    # child_exit dropped the dead worker's live gauges; its counts stay in the sums
    assert not [name for name in files if name.startswith("gauge_") and f"_{victim}." in name]
    assert {f"counter_{victim}.db", f"histogram_{victim}.db"} <= files
    for _ in range(4):
        found = assert_counts(server, sent)
        assert value(found, "lookalike_index_vectors") == 12
    while newcomer not in server.counted_by():
        assert sent < 1000, "the replacement worker never took a connection"
        server.get(COUNTED)
        sent += 1
    for _ in range(4):
        assert_counts(server, sent)

    server.proc.kill()  # SIGKILL to master and workers: nothing cleans up after them
    stale = {path.name for path in server.directory.glob("*.db")}
    assert {f"counter_{pid}.db" for pid in workers | {newcomer}} <= stale
    # `lookalike serve` this time: the same options, the same directory (host and bind)
    again = start(procs, setup, [*LOOKALIKE, "serve"])
    assert again.directory == server.directory
    assert not stale & {path.name for path in again.directory.glob("*.db")}
    found = assert_counts(again, 0)  # no series of the first run's requests
    assert value(found, "lookalike_index_vectors") == 12
    again.get(COUNTED)
    assert_counts(again, 1)

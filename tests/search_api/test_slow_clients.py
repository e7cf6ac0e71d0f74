"""Slow clients (slowloris) against a real gunicorn: other clients are still served.

gunicorn's gthread worker reads a request's head in a pool thread with no deadline once
its first bytes are in, so ``workers x threads`` connections that send a header line a
second held every thread for as long as they liked, and /healthz went unanswered (seen:
three 30 s timeouts against 1 worker x 2 threads and 6 such connections). The API's
worker (search_api.serve.HeadDeadlineWorker) closes a connection whose head is not
complete ``api_head_timeout`` seconds after a thread took it up.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import urllib3
from gunicorn_harness import indexed_server

from indexer.engine import Lookalike

HEAD_TIMEOUT = 2.0
THREADS = 2
SLOW_CLIENTS = 3 * THREADS  # more than the server's threads (one worker)
CLIENT_TIMEOUT = 60.0  # "blocked", not "slow": generous, no timing assertion beyond it


class Slowloris:
    """Connections that send a request line, then one header line every half second."""

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.sockets = [socket.create_connection(address, timeout=5) for _ in range(count)]
        for sock in self.sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        self.cut = [False] * count  # the server closed it (or reset it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        line = 0
        while not self._stop.wait(0.5):
            line += 1
            for index, sock in enumerate(self.sockets):
                if not self.cut[index]:
                    try:
                        sock.sendall(b"X-Slow-%d: y\r\n" % line)
                    except OSError:
                        self.cut[index] = True

    def closed_by_server(self) -> int:
        """How many the server has closed: their reads end (or reset) instead of waiting."""
        closed = 0
        for sock in self.sockets:
            sock.settimeout(CLIENT_TIMEOUT)
            try:
                closed += sock.recv(1024) == b""
            except ConnectionResetError:
                closed += 1
        return closed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    from worker_harness import Procs

    folder = tmp_path_factory.mktemp("slow-clients")
    procs = Procs(folder)
    try:
        yield indexed_server(folder, tiny_model, procs, api_workers=1, api_threads=THREADS,
                             api_head_timeout=HEAD_TIMEOUT)  # fmt: skip
    finally:
        procs.stop_all()


def test_slowloris_connections_do_not_starve_health_checks_and_searches(server):
    base, api, setup = server
    parts = urlsplit(base)
    engine = Lookalike.open(setup.settings)
    try:
        item = engine.catalog.items_with_status("indexed")[0]
    finally:
        engine.close()
    slow = Slowloris((parts.hostname, parts.port), SLOW_CLIENTS)
    try:
        time.sleep(HEAD_TIMEOUT / 2)  # every thread is taken by a slow head now
        http = urllib3.PoolManager(retries=False, timeout=CLIENT_TIMEOUT)
        assert http.request("GET", f"{base}/healthz").status == 200
        found = http.request("POST", f"{base}/api/v1/search", json={"item_id": item.id, "k": 2})
        assert found.status == 200, found.data[:300]
        assert found.json()["results"][0]["item_id"] == item.id
        assert slow.closed_by_server() == SLOW_CLIENTS
    finally:
        slow.stop()
    assert "no complete request head within 2 s" in api.text()


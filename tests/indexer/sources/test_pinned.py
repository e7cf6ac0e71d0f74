"""indexer.sources.pinned: deadlines, the socket watchdog, and requests to a pinned address."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import pytest
from fake_clock import FakeClock
from local_http import LocalServer

from indexer.sources.pinned import (
    Deadline,
    DeadlineExceeded,
    Endpoint,
    Watchdog,
    open_pinned,
)

ip = ipaddress.ip_address


def test_deadline_counts_down_and_caps_timeouts():
    clock = FakeClock(50.0)
    deadline = Deadline(10, clock=clock)
    assert deadline.remaining() == 10 and not deadline.expired
    assert deadline.cap(3) == 3
    clock.now += 8
    assert deadline.cap(3) == pytest.approx(2)
    clock.now += 2
    assert deadline.expired and deadline.remaining() == 0
    with pytest.raises(DeadlineExceeded, match="deadline of 10 s exceeded"):
        deadline.cap(3)


def test_watchdog_unblocks_a_reader_when_the_deadline_passes():
    left, right = socket.socketpair()
    try:
        left.settimeout(5)
        watchdog = Watchdog(Deadline(0.3))
        watchdog.watch(left)
        started = time.monotonic()
        assert left.recv(10) == b""  # shut down: the blocked read returns at once
        assert 0.25 <= time.monotonic() - started < 2
        assert watchdog.fired
        watchdog.close()
    finally:
        left.close()
        right.close()


def test_watchdog_closed_in_time_does_nothing():
    left, right = socket.socketpair()
    try:
        watchdog = Watchdog(Deadline(0.1))
        watchdog.watch(left)
        watchdog.close()
        time.sleep(0.2)
        right.sendall(b"ok")
        left.settimeout(1)
        assert left.recv(10) == b"ok" and not watchdog.fired
    finally:
        left.close()
        right.close()


@pytest.fixture
def server():
    with LocalServer() as local:
        local.serve("/a.jpg", b"\xff\xd8\xff" + b"x" * 100)
        yield local


def test_request_goes_to_the_pinned_address_with_the_host_name_in_the_header(server):
    # 127.0.0.2 is loopback too, but nothing listens there: the next address is tried.
    endpoint = Endpoint("http", "shop.test", server.port, (ip("127.0.0.2"), ip("127.0.0.1")))
    headers = {"Host": endpoint.host_header, "Connection": "close"}
    with open_pinned(
        endpoint, "/a.jpg", headers, deadline=Deadline(5), connect_timeout=1, read_timeout=1
    ) as response:
        assert response.status == 200 and response.address == ip("127.0.0.1")
        body = b""
        while chunk := response.read(7):
            body += chunk
    assert body == b"\xff\xd8\xff" + b"x" * 100
    assert server.requests[0].headers["Host"] == f"shop.test:{server.port}"


def test_host_header():
    assert Endpoint("http", "shop.test", 80, ()).host_header == "shop.test"
    assert Endpoint("https", "shop.test", 443, ()).host_header == "shop.test"
    assert Endpoint("https", "shop.test", 8443, ()).host_header == "shop.test:8443"
    assert Endpoint("http", "::1", 8080, ()).host_header == "[::1]:8080"


def test_deadline_reported_when_the_server_never_answers(server):
    release = threading.Event()
    server.route("/hang", lambda handler: release.wait(5))
    endpoint = Endpoint("http", "127.0.0.1", server.port, (ip("127.0.0.1"),))
    try:
        with pytest.raises(DeadlineExceeded):
            open_pinned(
                endpoint,
                "/hang",
                {"Host": endpoint.host_header},
                deadline=Deadline(0.3),
                connect_timeout=1,
                read_timeout=10,
            )
    finally:
        release.set()

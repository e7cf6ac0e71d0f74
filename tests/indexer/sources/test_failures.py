"""indexer.sources.failures: which failures are permanent, which are tried again, and why.

Real servers that refuse, stall, present the wrong certificate or answer with
an error status; the reason each failure is recorded with is checked as written.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from fetch_harness import JPEG, fake_resolver, fetch_error, make_fetcher
from local_http import LocalServer, make_tls_files, responder, send

# -- TLS: the host name kept for SNI, a certificate that must match it -----------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_tls_files(tmp_path_factory.mktemp("tls"), ["shop.test"])


@pytest.fixture
def tls_server(tls_files) -> Iterator[LocalServer]:
    context = tls_files.server_context()
    names: list[str | None] = []
    context.sni_callback = lambda sslobj, name, ctx: names.append(name)
    with LocalServer(tls=context) as local:
        local.notes["sni"] = names
        local.serve("/a.jpg", JPEG)
        yield local


def test_https_pinned_address_keeps_the_host_name_for_sni_and_certificate(
    tls_server, tls_files, connections
):
    resolve = fake_resolver({"shop.test": "127.0.0.1"})
    fetcher = make_fetcher(resolve=resolve, ca_certs=str(tls_files.ca))
    result = fetcher.fetch(tls_server.url("/a.jpg", host="shop.test"))
    assert result.data == JPEG and result.final_url.startswith("https://shop.test:")
    assert set(tls_server.notes["sni"]) == {"shop.test"}
    assert {r.headers["Host"] for r in tls_server.requests} == {f"shop.test:{tls_server.port}"}
    assert {host for host, _ in connections} == {"127.0.0.1"}


def test_https_certificate_for_another_name_refused(tls_server, tls_files):
    resolve = fake_resolver({"other.test": "127.0.0.1"})
    fetcher = make_fetcher(resolve=resolve, ca_certs=str(tls_files.ca))
    error = fetch_error(fetcher, tls_server.url("/a.jpg", host="other.test"))
    assert error.reason.startswith("TLS certificate of other.test not accepted")
    assert error.permanent and error.attempts == 1
    assert tls_server.requests == []


def test_https_certificate_from_an_unknown_ca_refused(tls_server):
    fetcher = make_fetcher(resolve=fake_resolver({"shop.test": "127.0.0.1"}))
    error = fetch_error(fetcher, tls_server.url("/a.jpg", host="shop.test"))
    assert error.reason.startswith("TLS certificate of shop.test not accepted")
    assert tls_server.requests == []


# -- the network -----------------------------------------------------------------------


def test_slow_headers_cut_off_by_the_deadline(server):
    def drip_headers(handler) -> None:
        handler.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
        for _ in range(100):
            handler.wfile.write(b"z")
            time.sleep(0.1)

    server.route("/slow-headers", drip_headers)
    fetcher = make_fetcher(deadline=0.8, read_timeout=5.0, retries=0, respect_robots=False)
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/slow-headers"))
    assert error.reason == "deadline of 0.8 s exceeded"
    assert time.monotonic() - started < 3.0


def test_read_timeout(server):
    def silent(handler) -> None:
        time.sleep(1.5)
        send(handler, 200, JPEG, "image/jpeg")

    server.route("/silent", silent)
    fetcher = make_fetcher(read_timeout=0.3, retries=1, respect_robots=False)
    error = fetch_error(fetcher, server.url("/silent"))
    assert error.reason == f"no data from 127.0.0.1:{server.port} for 0.3 s"
    assert not error.permanent and error.attempts == 2
    assert server.hits["/silent"] == 2


def test_connect_timeout():
    # A listener that never accepts, with its one-slot backlog taken: the next SYN is dropped.
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        fetcher = make_fetcher(connect_timeout=0.3, retries=0, respect_robots=False)
        started = time.monotonic()
        error = fetch_error(fetcher, f"http://127.0.0.1:{port}/a.jpg")
        assert error.reason == f"connecting to 127.0.0.1:{port} timed out after 0.3 s"
        assert not error.permanent
        assert time.monotonic() - started < 1.5
    finally:
        filler.close()
        listener.close()


def test_connection_refused_is_transient_and_retried():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = fetch_error(make_fetcher(retries=1, respect_robots=False), f"http://127.0.0.1:{port}/")
    assert error.reason == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert not error.permanent and error.attempts == 2


# -- statuses --------------------------------------------------------------------------


def test_404_is_permanent_and_recorded_at_once(server):
    error = fetch_error(make_fetcher(retries=3), server.url("/missing.jpg"))
    assert (error.reason, error.permanent, error.status, error.attempts) == (
        "HTTP 404",
        True,
        404,
        1,
    )
    assert server.hits["/missing.jpg"] == 1


@pytest.mark.parametrize("status", [400, 401, 403, 410, 501])
def test_other_client_errors_are_not_retried(server, status):
    server.route("/x", responder(status, b"no"))
    error = fetch_error(make_fetcher(retries=3), server.url("/x"))
    assert error.permanent and server.hits["/x"] == 1


def test_500_retried_then_recorded(server):
    server.route("/boom", responder(500, b"oops", "text/plain"))
    error = fetch_error(make_fetcher(retries=2), server.url("/boom"))
    assert (error.reason, error.permanent, error.attempts) == ("HTTP 500", False, 3)
    assert server.hits["/boom"] == 3


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_transient_status_then_success(server, status):
    server.sequence("/flaky", responder(status), responder(200, JPEG, "image/jpeg"))
    result = make_fetcher(retries=2).fetch(server.url("/flaky"))
    assert result.data == JPEG and result.attempts == 2
    assert server.hits["/flaky"] == 2

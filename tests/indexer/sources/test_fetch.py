"""indexer.sources.fetch against real local HTTP(S) servers that misbehave on purpose.

No network call is mocked. Host names that must resolve to internal addresses
use an injected resolver (we cannot control DNS); literal IP URLs take the real
path. An audit hook watches every ``socket.connect`` in these tests: it records
the address and blocks anything outside loopback, so "no connection was
attempted" is checked, and a bug could never send a packet to 10.x or
169.254.169.254.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from images_factory import jpeg_bytes, png_bytes
from local_http import LocalServer, make_tls_files, responder, send

from indexer.config import Settings
from indexer.sources.fetch import (
    Fetcher,
    FetchError,
    FetchPolicy,
    FetchResult,
    parse_retry_after,
)
from indexer.sources.netguard import parse_networks
from indexer.sources.ratelimit import LocalRateLimiter, RedisRateLimiter

JPEG = jpeg_bytes(seed=3)
LOOPBACK = parse_networks(["127.0.0.0/8"])
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>" + b"x" * 4000

# -- every connection attempt, watched -------------------------------------------------

# (the loopback guard and its `connections` fixture: conftest.py)

# -- servers and fetchers ---------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as local:
        local.serve("/a.jpg", JPEG)
        yield local


def make_policy(**overrides) -> FetchPolicy:
    """Loopback allowed, no pause between requests, short timeouts, quick retries."""
    values: dict = dict(
        allow_networks=LOOPBACK,
        connect_timeout=2.0,
        read_timeout=2.0,
        deadline=5.0,
        per_host_interval=0.0,
        retries=2,
        backoff=0.01,
        max_backoff=1.0,
    )
    values.update(overrides)
    return FetchPolicy(**values)


def make_fetcher(**overrides) -> Fetcher:
    collaborators = {
        k: overrides.pop(k)
        for k in ("resolve", "sleep", "jitter", "rate_limiter", "ca_certs")
        if k in overrides
    }
    return Fetcher(make_policy(**overrides), **collaborators)


def fake_resolver(table: dict[str, str | list[str]], calls: list[str] | None = None):
    """getaddrinfo for made-up names: ``{"shop.example": "10.1.2.3"}``."""

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ips = table[host]
        result = []
        for ip in [ips] if isinstance(ips, str) else ips:
            if ipaddress.ip_address(ip).version == 4:
                result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
            else:
                result.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
        return result

    return resolve


def fetch_error(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url)
    return info.value


def image_streamer(
    server: LocalServer, head: bytes, total: int, length: int | None = None
) -> threading.Event:
    """Route /stream: ``head``, then zeros up to ``total`` bytes, made as they are sent.

    Records in ``server.notes["sent"]`` how much went out before the client hung up.
    """
    done = threading.Event()

    def stream(handler) -> None:
        sent = 0
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "image/jpeg")
            if length is not None:
                handler.send_header("Content-Length", str(length))
            handler.end_headers()
            handler.wfile.write(head)
            sent = len(head)
            block = bytes(64 * 1024)
            while sent < total:
                handler.wfile.write(block)
                sent += len(block)
        finally:
            server.notes["sent"] = sent
            done.set()

    server.route("/stream", stream)
    return done


# -- the happy path ---------------------------------------------------------------------


def test_fetches_a_jpeg_and_says_how(server):
    result = make_fetcher().fetch(server.url("/a.jpg"))
    assert isinstance(result, FetchResult)
    assert result.data == JPEG
    assert (result.format, result.status, result.attempts) == ("JPEG", 200, 1)
    assert result.content_type == "image/jpeg"
    assert result.url == result.final_url == server.url("/a.jpg")
    request = server.requests[-1]
    assert request.headers["User-Agent"] == "LookalikeBot/0.1"
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"
    assert request.headers["Accept-Encoding"] == "identity"


def test_octet_stream_accepted_when_the_bytes_are_an_image(server):
    png = png_bytes(seed=1)
    server.serve("/b", png, "application/octet-stream")
    server.serve("/c", png, None)
    fetcher = make_fetcher()
    assert fetcher.fetch(server.url("/b")).format == "PNG"
    assert fetcher.fetch(server.url("/c")).format == "PNG"


def test_from_settings_builds_the_policy_and_the_allow_list(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_FETCH_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    settings = Settings(
        home=tmp_path,
        fetch_deadline=2.5,
        fetch_per_host_interval=0,
        max_image_bytes=12345,
        _env_file=None,
    )
    fetcher = Fetcher.from_settings(settings)
    assert fetcher.policy.allow_networks == LOOPBACK
    assert fetcher.policy.deadline == 2.5
    assert fetcher.policy.max_bytes == 12345  # fetch_max_bytes defaults to max_image_bytes
    assert isinstance(fetcher.rate_limiter, LocalRateLimiter)
    assert fetcher.fetch(server.url("/a.jpg")).data == JPEG


def test_settings_refuse_a_bad_network():
    with pytest.raises(ValueError, match="CIDR"):
        Settings(fetch_allow_networks=["10.0.0.0/33"], _env_file=None)


# -- schemes and addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://127.0.0.1:70/_SET", "ftp://127.0.0.1/a.jpg", "dict://x/"],
)
def test_only_http_and_https_schemes(url, connections):
    error = fetch_error(make_fetcher(), url)
    scheme = url.split(":", 1)[0]
    assert error.reason.startswith(f"scheme '{scheme}' not allowed")
    assert error.permanent and error.attempts == 1
    assert connections == []


def test_loopback_refused_unless_allowed(server, connections):
    error = fetch_error(make_fetcher(allow_networks=()), server.url("/a.jpg"))
    assert error.reason == "address 127.0.0.1 is loopback"
    assert error.permanent
    assert connections == [] and server.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "address 169.254.169.254 is link-local"),
        ("http://[::1]/", "address ::1 is loopback"),
        (
            "http://[::ffff:127.0.0.1]/",
            "address ::ffff:127.0.0.1 is loopback (it leads to 127.0.0.1)",
        ),
        (
            "http://[::ffff:a9fe:a9fe]/",
            "address ::ffff:169.254.169.254 is link-local (it leads to 169.254.169.254)",
        ),
        ("http://10.0.0.5/a.jpg", "address 10.0.0.5 is private"),
        ("http://172.16.0.1/", "address 172.16.0.1 is private"),
        ("http://192.168.1.1/", "address 192.168.1.1 is private"),
        ("http://100.64.0.1/", "address 100.64.0.1 is carrier-grade NAT (100.64.0.0/10)"),
        ("http://0.0.0.0/", "address 0.0.0.0 is unspecified"),
        ("http://224.0.0.1/", "address 224.0.0.1 is multicast"),
        ("http://240.0.0.1/", "address 240.0.0.1 is reserved"),
        ("http://[fd00::1]/", "address fd00::1 is unique-local (private)"),
        ("http://[fe80::1]/", "address fe80::1 is link-local"),
    ],
)
def test_literal_internal_addresses_refused(url, reason, connections):
    error = fetch_error(make_fetcher(allow_networks=()), url)
    assert (error.reason, error.permanent, error.attempts) == (reason, True, 1)
    assert connections == []


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.1", "0x7f000001"])
def test_other_spellings_of_loopback_refused_after_resolution(host, connections):
    error = fetch_error(make_fetcher(allow_networks=()), f"http://{host}/a.jpg")
    assert error.reason.endswith("is loopback") and error.permanent
    assert connections == []


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback (it leads to 127.0.0.1)"),
        ("100.64.1.1", "carrier-grade NAT (100.64.0.0/10)"),
        ("fd12:3456::1", "unique-local (private)"),
        ("fe80::1", "link-local"),
        ("64:ff9b::a00:1", "private (it leads to 10.0.0.1)"),
    ],
)
def test_host_names_resolving_to_internal_addresses_refused(ip, kind, connections):
    fetcher = make_fetcher(allow_networks=(), resolve=fake_resolver({"shop.example": ip}))
    error = fetch_error(fetcher, "http://shop.example/a.jpg")
    assert error.reason == f"address {ip} of shop.example is {kind}"
    assert error.permanent
    assert connections == []


def test_every_resolved_address_is_checked(server, connections):
    # One good answer does not excuse a bad one: the host is refused as a whole.
    resolve = fake_resolver({"shop.example": ["127.0.0.1", "10.0.0.1"]})
    error = fetch_error(make_fetcher(resolve=resolve), server.url("/a.jpg", host="shop.example"))
    assert error.reason == "address 10.0.0.1 of shop.example is private"
    assert connections == [] and server.requests == []


def test_unknown_host_is_a_permanent_failure(connections):
    error = fetch_error(make_fetcher(resolve=fake_resolver({})), "http://nowhere.example/")
    assert (error.reason, error.permanent, error.attempts) == (
        "host nowhere.example not found",
        True,
        1,
    )


def test_credentials_in_urls_refused(server):
    error = fetch_error(make_fetcher(), server.url("/a.jpg").replace("//", "//user:pw@"))
    assert error.reason == "credentials in URLs are not allowed"


# -- pinning ----------------------------------------------------------------------------


def test_connection_is_pinned_to_the_checked_address(server, connections):
    """One lookup per fetch; robots.txt and the image both go to the address it gave."""
    server.serve("/robots.txt", b"User-agent: *\nAllow: /\n", "text/plain")
    calls: list[str] = []
    answers = iter(["127.0.0.1", "10.66.0.1", "10.66.0.1"])

    def rebinding(host, port, *args, **kwargs):
        return fake_resolver({host: next(answers)}, calls)(host, port)

    fetcher = make_fetcher(resolve=rebinding)
    result = fetcher.fetch(server.url("/a.jpg", host="shop.test"))
    assert result.data == JPEG
    assert calls == ["shop.test"]
    assert server.paths() == ["/robots.txt", "/a.jpg"]
    assert connections == [("127.0.0.1", server.port)] * 2
    assert {r.headers["Host"] for r in server.requests} == {f"shop.test:{server.port}"}

    # The next fetch looks up again, and a rebound answer is caught, not followed.
    error = fetch_error(fetcher, server.url("/a.jpg", host="shop.test"))
    assert error.reason == "address 10.66.0.1 of shop.test is private"
    assert calls == ["shop.test", "shop.test"]
    assert len(connections) == 2


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


# -- redirects --------------------------------------------------------------------------


def test_redirects_followed_by_hand(server):
    server.redirect("/r1", server.url("/r2"), 301)
    server.redirect("/r2", "/a.jpg", 307)  # relative Location
    result = make_fetcher().fetch(server.url("/r1"))
    assert result.final_url == server.url("/a.jpg")
    assert result.data == JPEG
    assert server.paths() == ["/robots.txt", "/r1", "/r2", "/a.jpg"]


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://10.0.0.1/", "redirect to 10.0.0.1 refused: private"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "redirect to 169.254.169.254 refused: link-local",
        ),
        ("http://[::1]:8080/", "redirect to ::1 refused: loopback"),
        ("http://evil.example/x", "redirect to evil.example refused: address 10.0.0.7 is private"),
        (
            "file:///etc/passwd",
            "redirect to file:///etc/passwd refused: scheme 'file' not allowed"
            " (allowed: http, https)",
        ),
    ],
)
def test_redirect_from_an_allowed_host_to_an_internal_one_refused(
    server, connections, location, reason
):
    server.redirect("/go", location)
    fetcher = make_fetcher(resolve=fake_resolver({"evil.example": "10.0.0.7"}))
    error = fetch_error(fetcher, server.url("/go"))
    assert (error.reason, error.permanent, error.attempts) == (reason, True, 1)
    # Only the allowed server was ever connected to (robots.txt, then /go).
    assert connections == [("127.0.0.1", server.port)] * 2


def test_too_many_redirects(server):
    server.redirect("/loop", "/loop")
    error = fetch_error(make_fetcher(max_redirects=5), server.url("/loop"))
    assert error.reason == "too many redirects (more than 5)" and error.permanent
    assert server.hits["/loop"] == 6


def test_redirect_without_location(server):
    server.route("/bad", responder(302))
    error = fetch_error(make_fetcher(), server.url("/bad"))
    assert error.reason == "HTTP 302 without a Location" and error.permanent


# -- time limits ------------------------------------------------------------------------


def test_slow_body_cut_off_by_the_deadline(server):
    """One byte a second passes every read timeout; the deadline still ends it."""

    def drip(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(JPEG)))
        handler.end_headers()
        for byte in JPEG[:30]:
            handler.wfile.write(bytes([byte]))
            time.sleep(1.0)

    server.route("/slow", drip)
    fetcher = make_fetcher(deadline=1.5, read_timeout=5.0, retries=0, respect_robots=False)
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/slow"))
    elapsed = time.monotonic() - started
    assert error.reason == "deadline of 1.5 s exceeded"
    assert not error.permanent
    assert 1.4 <= elapsed < 3.0  # not the 30 s that reading it all would take


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


# -- size limits ------------------------------------------------------------------------


def test_endless_body_without_length_cut_off_at_the_byte_limit(server):
    limit = 1024 * 1024
    done = image_streamer(server, JPEG[:64], total=200 * 1024 * 1024)
    fetcher = make_fetcher(max_bytes=limit, respect_robots=False)
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/stream"))
    assert error.reason == f"body exceeds {limit} bytes"
    assert error.permanent and error.attempts == 1
    assert time.monotonic() - started < 3
    # The server had to stop early: the client hung up long before 200 MB.
    assert done.wait(10)
    assert server.notes["sent"] < 64 * 1024 * 1024


def test_content_length_over_the_limit_refused_before_reading(server):
    limit = 1024 * 1024
    done = image_streamer(server, JPEG[:64], total=300 * 1024 * 1024, length=300 * 1024 * 1024)
    error = fetch_error(make_fetcher(max_bytes=limit, respect_robots=False), server.url("/stream"))
    assert error.reason == f"body exceeds {limit} bytes (Content-Length: {300 * 1024 * 1024})"
    assert error.permanent
    assert done.wait(10)
    assert server.notes["sent"] < 64 * 1024 * 1024


def test_body_exactly_at_the_limit_accepted(server):
    result = make_fetcher(max_bytes=len(JPEG)).fetch(server.url("/a.jpg"))
    assert result.data == JPEG


def test_empty_body_refused(server):
    server.serve("/empty", b"")
    error = fetch_error(make_fetcher(), server.url("/empty"))
    assert error.reason == "empty body" and error.permanent


# -- content type -----------------------------------------------------------------------


def test_html_served_as_jpeg_refused(server):
    server.serve("/login", HTML, "image/jpeg")
    error = fetch_error(make_fetcher(), server.url("/login"))
    assert error.reason == "not an image: served as image/jpeg but the bytes are HTML"
    assert error.permanent


def test_text_html_refused_outright(server):
    server.serve("/page", JPEG, "text/html; charset=utf-8")  # even with image bytes
    error = fetch_error(make_fetcher(), server.url("/page"))
    assert error.reason == "not an image: served as text/html" and error.permanent


def test_image_types_we_do_not_decode_refused(server):
    server.serve("/logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    error = fetch_error(make_fetcher(), server.url("/logo.svg"))
    assert error.reason.startswith("image type image/svg+xml not supported")


def test_pdf_served_as_octet_stream_refused(server):
    server.serve("/doc", b"%PDF-1.7\n" + bytes(200), "application/octet-stream")
    error = fetch_error(make_fetcher(), server.url("/doc"))
    assert error.reason == "not an image: served as application/octet-stream but the bytes are PDF"


def test_compressed_body_refused(server):
    server.serve("/gz", JPEG, "image/jpeg", headers={"Content-Encoding": "gzip"})
    error = fetch_error(make_fetcher(), server.url("/gz"))
    assert error.reason == "unexpected Content-Encoding gzip"


# -- statuses and retries ---------------------------------------------------------------


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


def test_backoff_grows_exponentially_with_jitter_and_a_cap(server):
    server.route("/boom", responder(503))
    slept: list[float] = []
    fetcher = make_fetcher(
        retries=4, backoff=0.1, max_backoff=0.3, sleep=slept.append, jitter=lambda: 0.999999
    )
    fetch_error(fetcher, server.url("/boom"))
    assert slept == pytest.approx([0.1, 0.2, 0.3, 0.3], rel=1e-3)
    slept.clear()
    fetcher = make_fetcher(retries=2, backoff=0.1, sleep=slept.append, jitter=lambda: 0.0)
    fetch_error(fetcher, server.url("/boom"))
    assert slept == pytest.approx([0.05, 0.1])  # jitter keeps at least half the delay


def test_retry_after_honoured_when_reasonable(server):
    server.sequence(
        "/busy", responder(429, headers={"Retry-After": "2"}), responder(200, JPEG, "image/jpeg")
    )
    slept: list[float] = []
    fetcher = make_fetcher(max_backoff=5.0, sleep=slept.append)
    assert fetcher.fetch(server.url("/busy")).attempts == 2
    assert slept == [2.0]


def test_retry_after_beyond_the_cap_ends_the_fetch_for_the_caller_to_reschedule(server):
    server.route("/busy", responder(503, headers={"Retry-After": "3600"}))
    slept: list[float] = []
    error = fetch_error(make_fetcher(max_backoff=30.0, sleep=slept.append), server.url("/busy"))
    assert (error.reason, error.permanent, error.retry_after) == ("HTTP 503", False, 3600.0)
    assert slept == [] and server.hits["/busy"] == 1


def test_parse_retry_after():
    from datetime import UTC, datetime

    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


# -- robots.txt -------------------------------------------------------------------------


def test_robots_disallow_is_honoured(server):
    server.serve("/robots.txt", b"User-agent: *\nDisallow: /private/\n", "text/plain")
    server.serve("/private/a.jpg", JPEG)
    fetcher = make_fetcher()
    error = fetch_error(fetcher, server.url("/private/a.jpg"))
    assert (error.reason, error.permanent) == ("disallowed by robots.txt", True)
    assert "/private/a.jpg" not in server.paths()
    assert fetcher.fetch(server.url("/a.jpg")).data == JPEG


def test_robots_rules_for_our_user_agent(server):
    rules = b"User-agent: LookalikeBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n"
    server.serve("/robots.txt", rules, "text/plain")
    error = fetch_error(make_fetcher(), server.url("/a.jpg"))
    assert error.reason == "disallowed by robots.txt"
    assert make_fetcher(user_agent="OtherBot/1.0").fetch(server.url("/a.jpg")).data == JPEG


def test_robots_fetched_once_per_origin_and_cached(server):
    server.serve("/robots.txt", b"User-agent: *\nDisallow: /private/\n", "text/plain")
    fetcher = make_fetcher()
    for _ in range(3):
        fetcher.fetch(server.url("/a.jpg"))
    assert server.hits["/robots.txt"] == 1 and server.hits["/a.jpg"] == 3


def test_missing_robots_means_allowed(server):
    assert make_fetcher().fetch(server.url("/a.jpg")).data == JPEG
    assert server.paths() == ["/robots.txt", "/a.jpg"]  # the 404 was asked for


def test_robots_server_error_means_disallowed_for_now(server):
    server.route("/robots.txt", responder(503))
    error = fetch_error(make_fetcher(), server.url("/a.jpg"))
    assert error.reason == "disallowed by robots.txt" and error.permanent
    assert server.hits["/a.jpg"] == 0


def test_robots_unreachable_means_allowed_and_goes_through_the_same_checks(server, connections):
    server.redirect("/robots.txt", "http://10.0.0.1/robots.txt")
    assert make_fetcher().fetch(server.url("/a.jpg")).data == JPEG
    assert {host for host, _ in connections} == {"127.0.0.1"}


def test_robots_can_be_turned_off(server):
    server.serve("/robots.txt", b"User-agent: *\nDisallow: /\n", "text/plain")
    assert make_fetcher(respect_robots=False).fetch(server.url("/a.jpg")).data == JPEG
    assert server.paths() == ["/a.jpg"]


# -- per-host rate limit ----------------------------------------------------------------


def arrival_gaps(server: LocalServer, path: str) -> list[float]:
    times = sorted(r.at for r in server.requests if r.path == path)
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_requests_to_one_host_are_spaced_by_the_interval(server):
    fetcher = make_fetcher(per_host_interval=0.3, respect_robots=False)
    fetcher.fetch(server.url("/a.jpg"))
    fetcher.fetch(server.url("/a.jpg"))
    assert [gap >= 0.28 for gap in arrival_gaps(server, "/a.jpg")] == [True]


def test_concurrent_fetches_to_one_host_take_turns(server):
    fetcher = make_fetcher(per_host_interval=0.2, respect_robots=False)
    threads = [
        threading.Thread(target=fetcher.fetch, args=(server.url("/a.jpg"),)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    gaps = arrival_gaps(server, "/a.jpg")
    assert len(gaps) == 2 and min(gaps) >= 0.18


def test_rate_limit_wait_beyond_the_deadline_is_transient(server):
    limiter = LocalRateLimiter(10.0)
    limiter.reserve("127.0.0.1")  # someone else just took the slot
    fetcher = make_fetcher(rate_limiter=limiter, deadline=0.5, retries=0, respect_robots=False)
    error = fetch_error(fetcher, server.url("/a.jpg"))
    assert error.reason.startswith("rate limit: next request to 127.0.0.1 allowed in")
    assert not error.permanent and 9 < error.retry_after <= 10
    assert server.requests == []


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    """A real Redis (it must be running: no skip) and a key prefix of this test's own."""
    url = os.environ.get("LOOKALIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    client.ping()
    prefix = f"test:fetch:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()


def test_two_workers_sharing_redis_take_turns_on_one_host(server, redis_prefix):
    client, prefix = redis_prefix
    workers = [
        make_fetcher(
            rate_limiter=RedisRateLimiter(
                redis.Redis(connection_pool=client.connection_pool), 0.3, prefix=prefix
            ),
            respect_robots=False,
        )
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.fetch, args=(server.url("/a.jpg"),)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    gaps = arrival_gaps(server, "/a.jpg")
    assert len(gaps) == 1 and gaps[0] >= 0.28


def test_from_settings_uses_redis_when_configured(redis_prefix, tmp_path):
    settings = Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0", _env_file=None)
    assert isinstance(Fetcher.from_settings(settings).rate_limiter, RedisRateLimiter)

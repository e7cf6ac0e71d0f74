"""indexer.sources.fetch: the Fetcher's loop, redirects, robots.txt and the rate limit.

Against real local HTTP servers; no network call is mocked. The loopback guard
of conftest.py records every ``socket.connect`` and blocks anything outside
loopback. The checks each step makes have their own modules' tests:
test_hops (URLs and addresses), test_failures (what is permanent),
test_retries (backoff), test_responses (bodies, sizes, types), test_documents
(pages and sitemaps) and test_policy (the limits from the settings).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from fetch_harness import JPEG, LOOPBACK, fake_resolver, fetch_error, make_fetcher
from images_factory import png_bytes
from local_http import LocalServer, responder
from redis_support import own_prefix

from indexer.config import Settings
from indexer.sources.fetch import Fetcher, FetchResult
from indexer.sources.ratelimit import LocalRateLimiter, RedisRateLimiter

# -- the happy path --------------------------------------------------------------------


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


# -- pinning ---------------------------------------------------------------------------


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


# -- redirects -------------------------------------------------------------------------


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


# -- robots.txt ------------------------------------------------------------------------


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


# -- per-host rate limit ---------------------------------------------------------------


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
    with own_prefix("test:fetch:") as client_and_prefix:
        yield client_and_prefix


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

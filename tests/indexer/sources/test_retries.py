"""indexer.sources.retries: backoff with jitter and a cap, and Retry-After."""

from __future__ import annotations

import pytest
from fetch_harness import JPEG, fetch_error, make_fetcher, make_policy
from local_http import responder

from indexer.sources.failures import FetchError
from indexer.sources.retries import parse_retry_after, retry_delay


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


def failure(*, permanent: bool = False, retry_after: float | None = None) -> FetchError:
    return FetchError("x", permanent=permanent, url="http://shop.example/", retry_after=retry_after)


def test_retry_delay_gives_up_on_permanent_failures_and_after_the_retries():
    policy = make_policy(retries=2, backoff=1.0, max_backoff=10.0)
    no_jitter = lambda: 0.999999  # noqa: E731
    assert retry_delay(failure(permanent=True), 1, policy, no_jitter) is None
    assert retry_delay(failure(), 1, policy, no_jitter) == pytest.approx(1.0)
    assert retry_delay(failure(), 2, policy, no_jitter) == pytest.approx(2.0)
    assert retry_delay(failure(), 3, policy, no_jitter) is None


def test_retry_delay_takes_retry_after_up_to_the_cap():
    policy = make_policy(retries=3, backoff=1.0, max_backoff=10.0)
    half = lambda: 0.0  # noqa: E731
    assert retry_delay(failure(retry_after=7.0), 1, policy, half) == 7.0
    assert retry_delay(failure(retry_after=0.1), 1, policy, half) == pytest.approx(0.5)
    assert retry_delay(failure(retry_after=11.0), 1, policy, half) is None

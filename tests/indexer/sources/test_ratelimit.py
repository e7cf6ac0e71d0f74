"""indexer.sources.ratelimit: slots per host, in one process and shared through a real Redis.

The Redis tests need the server at ``LOOKALIKE_TEST_REDIS_URL`` (default: the local
one). Without it they fail: they never skip.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis
from fake_clock import FakeClock
from redis_support import TEST_REDIS_URL, own_prefix

from indexer.config import Settings
from indexer.sources.ratelimit import (
    LimiterUnavailable,
    LocalRateLimiter,
    RateLimited,
    RedisRateLimiter,
    rate_limiter_from_settings,
)


def test_local_limiter_spaces_slots_by_the_interval():
    clock = FakeClock(1000.0)
    limiter = LocalRateLimiter(2.0, clock=clock)
    assert limiter.reserve("a.example") == 0
    assert limiter.reserve("a.example") == 2.0  # booked behind the first
    assert limiter.reserve("a.example") == 4.0
    assert limiter.reserve("b.example") == 0  # other hosts are not held up
    clock.now += 10
    assert limiter.reserve("a.example") == 0  # old slots have passed


def test_local_limiter_refuses_a_wait_beyond_max_wait_and_books_nothing():
    clock = FakeClock(1000.0)
    limiter = LocalRateLimiter(5.0, clock=clock)
    limiter.reserve("a.example")
    with pytest.raises(RateLimited) as info:
        limiter.reserve("a.example", max_wait=1.0)
    assert info.value.wait == 5.0 and info.value.key == "a.example"
    assert limiter.reserve("a.example", max_wait=5.0) == 5.0  # the slot was still free


def test_local_limiter_with_zero_interval_never_waits():
    limiter = LocalRateLimiter(0.0)
    assert [limiter.reserve("a") for _ in range(3)] == [0.0, 0.0, 0.0]


def test_local_limiter_is_thread_safe():
    clock = FakeClock(1000.0)
    limiter = LocalRateLimiter(1.0, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            wait = limiter.reserve("host")
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == [float(i) for i in range(200)]  # every slot handed out once


def test_negative_interval_refused():
    with pytest.raises(ValueError, match="interval"):
        LocalRateLimiter(-1)


# -- Redis ------------------------------------------------------------------------------


def redis_url() -> str:
    return TEST_REDIS_URL


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    """A real Redis (no skip when it is missing) and a key prefix of this test's own."""
    with own_prefix("test:ratelimit:") as client_and_prefix:
        yield client_and_prefix


def test_two_redis_limiters_serialise_one_host(redis_prefix):
    client, prefix = redis_prefix
    # Two workers: separate clients and connections, one Redis.
    first = RedisRateLimiter(redis.Redis.from_url(redis_url()), 0.5, prefix=prefix)
    second = RedisRateLimiter(redis.Redis.from_url(redis_url()), 0.5, prefix=prefix)
    assert first.reserve("shop.example") == 0
    assert 0.45 <= second.reserve("shop.example") <= 0.5
    assert 0.95 <= first.reserve("shop.example") <= 1.0
    assert second.reserve("other.example") == 0
    # The key holds the next free time and expires once that has passed.
    ttl_ms = client.pttl(prefix + "shop.example")
    assert 1000 < ttl_ms <= 2500


def test_redis_limiters_hand_out_distinct_slots_under_contention(redis_prefix):
    _, prefix = redis_prefix
    limiters = [
        RedisRateLimiter(redis.Redis.from_url(redis_url()), 10.0, prefix=prefix) for _ in range(4)
    ]
    waits: list[float] = []
    lock = threading.Lock()

    def take(limiter: RedisRateLimiter) -> None:
        for _ in range(5):
            wait = limiter.reserve("busy.example")
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=take, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    waits.sort()
    assert len(waits) == 20 and waits[0] == 0
    # Every booking is one interval behind the previous one, less the time that passed
    # between the two calls: a long interval keeps that noise (a loaded machine) small.
    gaps = [b - a for a, b in zip(waits, waits[1:], strict=False)]
    assert all(9.0 <= gap <= 10.002 for gap in gaps), gaps


def test_redis_limiter_refuses_a_wait_beyond_max_wait_and_books_nothing(redis_prefix):
    client, prefix = redis_prefix
    limiter = RedisRateLimiter(client, 10.0, prefix=prefix)
    limiter.reserve("slow.example")
    with pytest.raises(RateLimited) as info:
        limiter.reserve("slow.example", max_wait=1.0)
    assert 9 <= info.value.wait <= 10
    assert 9 <= limiter.reserve("slow.example", max_wait=10.0) <= 10


def test_redis_limiter_unavailable_is_reported():
    limiter = RedisRateLimiter(
        redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), 1.0
    )
    with pytest.raises(LimiterUnavailable, match="rate limiter unavailable"):
        limiter.reserve("shop.example")


def test_rate_limiter_from_settings(tmp_path, redis_prefix):
    local = rate_limiter_from_settings(
        Settings(home=tmp_path, fetch_per_host_interval=2.0, _env_file=None)
    )
    assert isinstance(local, LocalRateLimiter) and local.interval == 2.0
    shared = rate_limiter_from_settings(
        Settings(home=tmp_path, redis_url=redis_url(), _env_file=None)
    )
    assert isinstance(shared, RedisRateLimiter)

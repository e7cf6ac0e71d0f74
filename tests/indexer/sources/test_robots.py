"""indexer.sources.robots: how answers are read, and the per-origin cache with its TTLs."""

from __future__ import annotations

import pytest
from fake_clock import FakeClock

from indexer.sources.robots import (
    MAX_ROBOTS_BYTES,
    RobotsAnswer,
    RobotsCache,
    origin,
    robots_url,
    rules_from,
)

UA = "LookalikeBot/0.1"
RULES = b"User-agent: *\nDisallow: /private/\n\nUser-agent: lookalikebot\nDisallow: /no-bots/\n"


class Loader:
    """Answers robots.txt requests from a table and counts them."""

    def __init__(self, answer: RobotsAnswer) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, url: str) -> RobotsAnswer:
        self.asked.append(url)
        return self.answer


def test_origin_and_robots_url():
    assert origin("http://Shop.Example/a/b.jpg?x=1") == "http://shop.example:80"
    assert origin("https://shop.example:8443/a") == "https://shop.example:8443"
    assert origin("http://[::1]:8080/") == "http://[::1]:8080"
    assert robots_url("https://shop.example/a/b.jpg") == "https://shop.example:443/robots.txt"


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [
        (RobotsAnswer(None), True),  # unreachable
        (RobotsAnswer(404), True),
        (RobotsAnswer(410), True),
        (RobotsAnswer(403), True),  # Google reads every 4xx but 429 as "no rules"
        (RobotsAnswer(429), False),
        (RobotsAnswer(500), False),
        (RobotsAnswer(503), False),
        (RobotsAnswer(200, b""), True),
        (RobotsAnswer(200, b"User-agent: *\nDisallow: /\n"), False),
    ],
)
def test_how_answers_are_read(answer, allowed):
    assert rules_from(answer).can_fetch(UA, "http://shop.example/a.jpg") is allowed


def test_rules_by_path_and_user_agent():
    rules = rules_from(RobotsAnswer(200, RULES))
    assert rules.can_fetch(UA, "http://shop.example/no-bots/a.jpg") is False
    assert rules.can_fetch(UA, "http://shop.example/private/a.jpg") is True  # our group only
    assert rules.can_fetch("OtherBot", "http://shop.example/private/a.jpg") is False
    assert rules.can_fetch("OtherBot", "http://shop.example/no-bots/a.jpg") is True


def test_only_the_first_500_kib_are_read():
    padding = b"# " + b"x" * MAX_ROBOTS_BYTES + b"\n"
    rules = rules_from(RobotsAnswer(200, padding + b"User-agent: *\nDisallow: /\n"))
    assert rules.can_fetch(UA, "http://shop.example/a.jpg") is True


def test_cache_loads_once_per_origin_until_the_ttl():
    clock = FakeClock(0.0)
    cache = RobotsCache(UA, ttl=100, clock=clock)
    loader = Loader(RobotsAnswer(200, RULES))
    assert cache.allowed("http://shop.example/no-bots/a.jpg", loader) is False
    assert cache.allowed("http://shop.example/ok.jpg", loader) is True
    assert cache.allowed("http://shop.example:8080/ok.jpg", loader) is True  # another origin
    assert cache.allowed("https://shop.example/ok.jpg", loader) is True  # and another
    assert loader.asked == [
        "http://shop.example:80/robots.txt",
        "http://shop.example:8080/robots.txt",
        "https://shop.example:443/robots.txt",
    ]
    clock.now = 99
    cache.allowed("http://shop.example/ok.jpg", loader)
    assert len(loader.asked) == 3
    clock.now = 101
    cache.allowed("http://shop.example/ok.jpg", loader)
    assert len(loader.asked) == 4


@pytest.mark.parametrize("answer", [RobotsAnswer(503), RobotsAnswer(None)])
def test_errors_are_asked_again_sooner(answer):
    clock = FakeClock(0.0)
    cache = RobotsCache(UA, ttl=3600, error_ttl=60, clock=clock)
    loader = Loader(answer)
    cache.allowed("http://shop.example/a.jpg", loader)
    clock.now = 61
    loader.answer = RobotsAnswer(200, b"")
    assert cache.allowed("http://shop.example/a.jpg", loader) is True
    assert len(loader.asked) == 2


def test_cache_stays_bounded():
    cache = RobotsCache(UA, max_entries=3)
    loader = Loader(RobotsAnswer(404))
    for n in range(10):
        cache.allowed(f"http://host{n}.example/a.jpg", loader)
    assert len(cache._entries) <= 3

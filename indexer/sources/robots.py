"""robots.txt: loaded once per origin, cached for a while, asked before every request.

The cache does not fetch anything itself: the caller passes a loader that goes
through the fetcher's own safe path (address checks, pinned connection, deadline),
so robots.txt can never be the way around those checks.

How an answer is read follows Google's reading of RFC 9309:

* 2xx: the rules in the file (parsed by :mod:`urllib.robotparser`);
* 4xx other than 429, or no answer at all (connection refused, bad address,
  too many redirects): no rules, everything allowed;
* 429 and 5xx: the site is struggling, so everything is disallowed *for now*:
  that verdict is kept only ``error_ttl`` seconds, then asked again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

#: Google reads the first 500 KiB of a robots.txt and ignores the rest.
MAX_ROBOTS_BYTES = 500 * 1024

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class RobotsAnswer:
    """What loading ``/robots.txt`` gave: an HTTP status and body, or ``status=None``."""

    status: int | None
    body: bytes = b""


#: Loads the robots.txt URL it is given.
RobotsLoader = Callable[[str], RobotsAnswer]


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, port always written: the robots.txt cache key."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{parts.port or _DEFAULT_PORTS.get(scheme, 0)}"


def robots_url(url: str) -> str:
    return origin(url) + "/robots.txt"


def rules_from(answer: RobotsAnswer) -> RobotFileParser:
    """The rules an answer stands for (see the module docstring)."""
    rules = RobotFileParser()
    status = answer.status
    if status is not None and 200 <= status < 300:
        text = answer.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        rules.parse(text.splitlines())
    elif status is not None and (status == 429 or status >= 500):
        rules.disallow_all = True
    else:
        rules.allow_all = True
    return rules


def _is_verdict(answer: RobotsAnswer) -> bool:
    """A real answer from the site, kept the full TTL; errors are asked again sooner."""
    return answer.status is not None and 200 <= answer.status < 500 and answer.status != 429


class RobotsCache:
    """Thread-safe cache of robots.txt rules per origin."""

    def __init__(
        self,
        user_agent: str,
        *,
        ttl: float = 3600.0,
        error_ttl: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user_agent = user_agent
        self.ttl = ttl
        self.error_ttl = min(error_ttl, ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, RobotFileParser]] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str, load: RobotsLoader) -> bool:
        """May ``url`` be fetched? Loads the origin's robots.txt through ``load`` if needed."""
        rules = self._rules(origin(url), load)
        return rules.can_fetch(self.user_agent, url)

    def _rules(self, key: str, load: RobotsLoader) -> RobotFileParser:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                return entry[1]
        # Loaded outside the lock: a slow site must not hold up every other host.
        # Two threads may load the same file at once; both get the same answer.
        answer = load(key + "/robots.txt")
        rules = rules_from(answer)
        expires = now + (self.ttl if _is_verdict(answer) else self.error_ttl)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            while len(self._entries) >= self.max_entries:  # still full: drop the oldest
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (expires, rules)
        return rules

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

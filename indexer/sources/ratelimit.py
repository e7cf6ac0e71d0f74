"""Per-host politeness: at most one request to a host every ``interval`` seconds.

A limiter hands out *slots*. :meth:`RateLimiter.reserve` books the next free time
for a key (a host name) and returns how long the caller must wait for it; the
caller sleeps, then sends its request. Booking before sleeping is what keeps
concurrent callers apart: each one gets its own slot, ``interval`` after the
previous one, instead of all waking at the same moment.

A caller that cannot wait that long (its deadline is nearer) gets
:class:`RateLimited` and nothing is booked, so a busy host does not pile up
reservations that nobody uses.

:class:`LocalRateLimiter` serves the threads of one process. Celery workers on
several machines share :class:`RedisRateLimiter`: one Lua script reads and moves a
per-host key atomically, on the Redis server's clock, so workers with skewed
clocks still agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import redis

if TYPE_CHECKING:
    from indexer.config import Settings


class RateLimited(Exception):
    """The next slot for a key is further away than the caller can wait."""

    def __init__(self, key: str, wait: float) -> None:
        super().__init__(f"next request to {key} allowed in {wait:.2f} s")
        self.key = key
        self.wait = wait


class LimiterUnavailable(RuntimeError):
    """The shared limiter (Redis) could not be asked: a transient failure."""


class RateLimiter(Protocol):
    interval: float

    def reserve(self, key: str, max_wait: float = float("inf")) -> float:
        """Book the next slot for ``key``; seconds to wait for it (0 when free now).

        Raises :class:`RateLimited` (booking nothing) when the wait would exceed
        ``max_wait``.
        """
        ...


class LocalRateLimiter:
    """Thread-safe limiter for one process."""

    # Forget hosts whose slot lies in the past once this many are remembered.
    _PRUNE_AT = 10_000

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        self.interval = interval
        self._clock = clock
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, max_wait: float = float("inf")) -> float:
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(key, now))
            wait = slot - now
            if wait > max_wait:
                raise RateLimited(key, wait)
            if len(self._next) >= self._PRUNE_AT:
                self._next = {k: t for k, t in self._next.items() if t > now}
            self._next[key] = slot + self.interval
            return wait


# KEYS[1]: the host's key, holding the next free time in ms (server clock).
# ARGV[1]: interval in ms; ARGV[2]: the longest wait the caller accepts, in ms.
# Returns {booked (1/0), wait in ms}. The key expires once its slot has passed.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or now))
local wait = slot - now
if wait > tonumber(ARGV[2]) then
    return {0, wait}
end
redis.call('SET', KEYS[1], slot + interval, 'PX', wait + interval + 1000)
return {1, wait}
"""


class RedisRateLimiter:
    """Limiter shared by every process that uses the same Redis and key prefix."""

    def __init__(
        self, client: redis.Redis, interval: float, *, prefix: str = "lookalike:fetch:host:"
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval}")
        self.interval = interval
        self.prefix = prefix
        self._client = client
        self._script = client.register_script(_RESERVE_LUA)

    @classmethod
    def from_url(cls, url: str, interval: float, **kwargs) -> RedisRateLimiter:
        return cls(redis.Redis.from_url(url), interval, **kwargs)

    def reserve(self, key: str, max_wait: float = float("inf")) -> float:
        if self.interval <= 0:
            return 0.0
        interval_ms = max(1, round(self.interval * 1000))
        # Lua numbers are doubles: an "infinite" wait is a day, far beyond any deadline.
        max_wait_ms = round(min(max_wait, 86_400.0) * 1000)
        try:
            booked, wait_ms = self._script(
                keys=[self.prefix + key], args=[interval_ms, max_wait_ms]
            )
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"rate limiter unavailable: {exc}") from exc
        wait = int(wait_ms) / 1000
        if not booked:
            raise RateLimited(key, wait)
        return wait


def rate_limiter_from_settings(settings: Settings) -> RateLimiter:
    """Redis-backed when ``settings.redis_url`` is set (shared by workers), else in-process."""
    interval = settings.fetch_per_host_interval
    if settings.redis_url:
        return RedisRateLimiter.from_url(settings.redis_url, interval)
    return LocalRateLimiter(interval)

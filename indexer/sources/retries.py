"""When to try a failed fetch again: exponential backoff with jitter, Retry-After honoured.

Only transient failures are retried, at most ``policy.retries`` times. A
Retry-After longer than ``policy.max_backoff`` ends the fetch at once: the error
keeps the delay (:attr:`~indexer.sources.failures.FetchError.retry_after`) for
the caller to reschedule rather than hold a worker that long.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime

from indexer.sources.failures import FetchError
from indexer.sources.policy import FetchPolicy


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_delay(
    exc: FetchError, attempt: int, policy: FetchPolicy, jitter: Callable[[], float]
) -> float | None:
    """Seconds to wait after failed attempt number ``attempt``, or None to give up now.

    ``jitter`` gives a random number in [0, 1): the delay keeps at least half its size.
    """
    if exc.permanent or attempt > policy.retries:
        return None
    if exc.retry_after is not None and exc.retry_after > policy.max_backoff:
        return None  # the caller reschedules (retry_after is on the error)
    delay = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
    delay *= 0.5 + jitter() / 2  # jitter: workers that failed together spread out
    if exc.retry_after is not None:
        delay = max(delay, exc.retry_after)
    return delay

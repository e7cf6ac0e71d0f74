"""Why a fetch failed, and whether trying again may help.

:class:`FetchError` carries a short, human-readable reason for the catalog and
``permanent``: a refused address, a 404 or something that is not an image will
not change on a retry; a timeout, a broken connection or HTTP 503 may.
:func:`network_failure` and :func:`status_failure` draw that line for the
network-level exceptions and the HTTP statuses a fetch meets.
"""

from __future__ import annotations

import http.client
import ssl

from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from indexer.sources.pinned import Deadline, DeadlineExceeded, Endpoint
from indexer.sources.policy import FetchPolicy

#: Statuses worth another try; every other non-OK status is permanent.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """A fetch that failed. ``reason`` is short and human-readable, for the catalog.

    ``permanent``: trying again will not help (refused address, 404, not an image);
    else the failure was transient and the retries are used up. ``retry_after`` is
    the delay the server asked for (or the rate limiter needs), when known.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        url: str,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.url = url
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts

    def __str__(self) -> str:
        return self.reason


class NotNow(FetchError):
    """Out of time or out of turns: says nothing about the site, so nothing of it is cached."""


def status_failure(status: int, retry_after: float | None, url: str) -> FetchError:
    """The error for a response with a status that is not OK (``retry_after`` from its header)."""
    transient = status in RETRY_STATUSES
    return FetchError(
        f"HTTP {status}",
        permanent=not transient,
        url=url,
        status=status,
        retry_after=retry_after if transient else None,
    )


def network_failure(
    exc: Exception, endpoint: Endpoint, deadline: Deadline, url: str, policy: FetchPolicy
) -> Exception:
    """The FetchError a network-level exception stands for (or ``exc`` if unknown)."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, DeadlineExceeded) or deadline.expired:
        return NotNow(str(deadline), permanent=False, url=url)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        why = f"TLS certificate of {endpoint.host} not accepted: {detail}"
        return FetchError(why, permanent=True, url=url)
    if isinstance(exc, ssl.SSLError | Urllib3SSLError):
        return FetchError(f"TLS error with {where}: {exc}", permanent=False, url=url)
    if isinstance(exc, NewConnectionError):
        return FetchError(f"cannot connect to {where}: {_cause(exc)}", permanent=False, url=url)
    if isinstance(exc, ConnectTimeoutError):
        why = f"connecting to {where} timed out after {policy.connect_timeout:g} s"
        return FetchError(why, permanent=False, url=url)
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        why = f"no data from {where} for {policy.read_timeout:g} s"
        return FetchError(why, permanent=False, url=url)
    if isinstance(exc, ProtocolError | ConnectionError | http.client.IncompleteRead):
        return FetchError(f"connection to {where} broken: {_cause(exc)}", permanent=False, url=url)
    if isinstance(exc, http.client.HTTPException):
        why = f"invalid HTTP response from {where}: {type(exc).__name__}"
        return FetchError(why, permanent=True, url=url)
    if isinstance(exc, OSError):
        return FetchError(f"network error with {where}: {_cause(exc)}", permanent=False, url=url)
    return exc


def _cause(exc: BaseException) -> str:
    """The innermost OS-level message (``Connection refused``) behind a wrapped error."""
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror
        inner = inner.__cause__ or inner.__context__
    return str(exc)

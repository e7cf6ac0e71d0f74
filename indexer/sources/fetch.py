"""Download one image or web page from an untrusted URL: safely, politely and within bounds.

Ingest workers use it for the ``image_url`` rows of manifests and for images
found by crawling. :meth:`Fetcher.fetch` returns the bytes of something that
looks like an image we decode, or raises :class:`FetchError` with a short,
human-readable reason for the catalog and ``permanent`` telling whether a later
try may succeed. :meth:`Fetcher.fetch_document` does the same for the HTML pages
and XML sitemaps a crawl reads (:mod:`~indexer.sources.crawl`), under its own
byte limit; only the checks of step 5 below differ.

Every request, for the first URL and for each redirect (followed by hand, at
most ``max_redirects``), goes through the same steps:

1. the scheme must be http or https;
2. the host is resolved once, every address is checked and the connection is
   pinned to a checked one (:mod:`~indexer.sources.netguard`,
   :mod:`~indexer.sources.pinned`);
3. the origin's robots.txt, loaded through these same steps and cached
   (:mod:`~indexer.sources.robots`);
4. a slot from the per-host rate limiter (:mod:`~indexer.sources.ratelimit`);
5. the response: status, Content-Length against the byte limit, Content-Type,
   then the body, streamed under the byte limit, its first bytes sniffed
   (:mod:`~indexer.sources.content`). A document may come gzip-compressed (a
   ``sitemap.xml.gz``, or ``Content-Encoding: gzip`` though we ask for none): the
   byte limit then holds for the compressed and the decompressed size alike.

One attempt (redirects, robots.txt, waiting for a rate-limit slot and the body
included) has one deadline. Transient failures (connection errors, timeouts,
HTTP 408, 429, 500, 502, 503, 504) are tried again with exponential backoff and
jitter; a Retry-After is honoured up to ``max_backoff``, and a longer one ends
the fetch at once with :attr:`FetchError.retry_after` set, for the caller to
reschedule. Everything else is permanent and reported after the first attempt.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from indexer.images import sniff_format
from indexer.sources.content import (
    SNIFF_BYTES,
    UNTYPED,
    bytes_refusal,
    content_type_refusal,
    looks_like_html,
    media_type,
)
from indexer.sources.content import sniff_image as _sniff_image
from indexer.sources.netguard import (
    IPAddress,
    IPNetwork,
    Resolver,
    display,
    literal_address,
    parse_networks,
    refusal,
    resolve,
)
from indexer.sources.pinned import Deadline, DeadlineExceeded, Endpoint, PinnedResponse, open_pinned
from indexer.sources.ratelimit import (
    LimiterUnavailable,
    LocalRateLimiter,
    RateLimited,
    RateLimiter,
    rate_limiter_from_settings,
)
from indexer.sources.robots import (
    MAX_ROBOTS_BYTES,
    RobotsAnswer,
    RobotsCache,
    robots_url,
    rules_from,
)

if TYPE_CHECKING:
    from indexer.config import Settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
OK_STATUSES = frozenset({200, 203})
DEFAULT_USER_AGENT = "LookalikeBot/0.1"
ACCEPT = "image/jpeg,image/png,image/webp,image/gif,image/bmp;q=0.9,*/*;q=0.1"
CHUNK_BYTES = 64 * 1024

#: What :meth:`Fetcher.fetch_document` may be asked for, and the media types of each.
DOCUMENT_TYPES: dict[str, tuple[str, ...]] = {
    "html": ("text/html", "application/xhtml+xml"),
    "xml": ("application/xml", "text/xml"),
}
#: A gzip file (``sitemap.xml.gz``): accepted, and decompressed, for the kind "xml" only.
GZIP_TYPES = ("application/gzip", "application/x-gzip")
GZIP_MAGIC = b"\x1f\x8b"

_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# Characters left as they are in a request target; the rest is percent-encoded,
# so a URL can never smuggle a space or a line break into the request line.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


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


class _NotNow(FetchError):
    """Out of time or out of turns: says nothing about the site (see _load_robots)."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A downloaded image or document: its bytes and where and how they came."""

    url: str  # as asked for
    final_url: str  # after redirects
    data: bytes  # a document's bytes are decompressed
    content_type: str | None  # as the server sent it
    format: str  # an image: one of indexer.images.ALLOWED_FORMATS; a document: its kind
    status: int
    attempts: int
    etag: str | None = None  # validators, for telling a changed resource from the same one
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """The limits a :class:`Fetcher` works within. Times are seconds."""

    allow_networks: tuple[IPNetwork, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    deadline: float = 30.0
    max_bytes: int = 25 * MiB
    max_document_bytes: int = 5 * MiB  # an HTML page or sitemap, decompressed
    user_agent: str = DEFAULT_USER_AGENT
    per_host_interval: float = 1.0
    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_redirects: int = 5
    respect_robots: bool = True
    robots_ttl: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            allow_networks=parse_networks(settings.fetch_allow_networks),
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            deadline=settings.fetch_deadline,
            max_bytes=settings.fetch_max_bytes or settings.max_image_bytes,
            user_agent=settings.fetch_user_agent,
            per_host_interval=settings.fetch_per_host_interval,
            retries=settings.fetch_retries,
            backoff=settings.fetch_backoff,
            max_backoff=settings.fetch_max_backoff,
            max_redirects=settings.fetch_max_redirects,
            respect_robots=settings.fetch_respect_robots,
            robots_ttl=settings.fetch_robots_ttl,
        )


@dataclass(frozen=True, slots=True)
class _Hop:
    """One URL to request, already checked: where to connect and what to ask for."""

    url: str
    endpoint: Endpoint
    target: str  # request target: /path?query


#: Reads an open response's body: its bytes and format, or raises FetchError.
_BodyReader = Callable[[PinnedResponse, _Hop, Deadline, str], tuple[bytes, str]]


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


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _request_target(path: str, query: str) -> str:
    target = quote(path or "/", safe=_PATH_SAFE)
    return f"{target}?{quote(query, safe=_QUERY_SAFE)}" if query else target


def _cause(exc: BaseException) -> str:
    """The innermost OS-level message (``Connection refused``) behind a wrapped error."""
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror
        inner = inner.__cause__ or inner.__context__
    return str(exc)


class Fetcher:
    """Fetches images and documents under a :class:`FetchPolicy`. Thread-safe; keep one per process.

    Collaborators default to the real thing and can be swapped: ``resolve``
    (``socket.getaddrinfo``'s signature), ``rate_limiter`` (in-process unless
    given), ``robots`` (a :class:`RobotsCache`), ``sleep``, ``clock``, ``jitter``
    (a random number in [0, 1) for backoff) and ``ca_certs`` (a CA bundle file;
    default: the system's).
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        rate_limiter: RateLimiter | None = None,
        robots: RobotsCache | None = None,
        resolve: Resolver = socket.getaddrinfo,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        ca_certs: str | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self.rate_limiter = (
            rate_limiter
            if rate_limiter is not None
            else LocalRateLimiter(self.policy.per_host_interval)
        )
        self.robots = (
            robots
            if robots is not None
            else RobotsCache(self.policy.user_agent, ttl=self.policy.robots_ttl)
        )
        self.resolve = resolve
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._ca_certs = ca_certs

    @classmethod
    def from_settings(
        cls, settings: Settings, *, rate_limiter: RateLimiter | None = None, **kwargs
    ) -> Fetcher:
        """A fetcher for ``settings``; the rate limiter is Redis-backed if ``redis_url`` is set."""
        if rate_limiter is None:
            rate_limiter = rate_limiter_from_settings(settings)
        return cls(FetchPolicy.from_settings(settings), rate_limiter=rate_limiter, **kwargs)

    # -- the retry loop --------------------------------------------------------

    def fetch(self, url: str) -> FetchResult:
        """Download the image at ``url`` or raise :class:`FetchError`."""
        return self._fetch(url, self._read_image, ACCEPT)

    def fetch_document(self, url: str, kinds: Sequence[str] = ("html",)) -> FetchResult:
        """Download the HTML page or XML document at ``url`` or raise :class:`FetchError`.

        ``kinds`` says what is wanted, from :data:`DOCUMENT_TYPES` ("html", "xml");
        anything served as another type is refused. ``data`` holds the bytes,
        decompressed if they came gzip-compressed (only "xml" accepts a gzip file,
        for ``sitemap.xml.gz``), and ``format`` the kind they turned out to be.
        The body is limited to ``policy.max_document_bytes``, decompressed or not.
        """
        kinds = tuple(dict.fromkeys(kinds))
        unknown = [kind for kind in kinds if kind not in DOCUMENT_TYPES]
        if unknown or not kinds:
            what = f"unknown document kinds {unknown!r}" if unknown else "no document kind"
            raise ValueError(f"{what} (known: {', '.join(DOCUMENT_TYPES)})")
        accept = ",".join(t for kind in kinds for t in DOCUMENT_TYPES[kind]) + ",*/*;q=0.1"

        def read(response: PinnedResponse, hop: _Hop, deadline: Deadline, url: str):
            return self._read_document(response, hop, deadline, url, kinds)

        return self._fetch(url, read, accept)

    def robots_sitemaps(self, url: str) -> list[str]:
        """The ``Sitemap:`` URLs in the robots.txt of ``url``'s site, as written there.

        Loaded through the same checks as everything else, once per call (the rules
        cache keeps no sitemaps); an unreachable or missing robots.txt lists none.
        """
        deadline = Deadline(self.policy.deadline, clock=self._clock)
        hop = self._hop(url, url, deadline, redirected=False)
        answer = self._load_robots(robots_url(url), hop, deadline, url)
        return list(rules_from(answer).site_maps() or [])

    def _fetch(self, url: str, read: _BodyReader, accept: str) -> FetchResult:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._attempt(url, read, accept)
            except FetchError as exc:
                exc.attempts = attempt
                delay = self._retry_delay(exc, attempt)
                if delay is None:
                    log.info("fetch failed after %d attempt(s): %s: %s", attempt, url, exc.reason)
                    raise
                log.info("fetch %s: %s; retry in %.2f s", url, exc.reason, delay)
                self._sleep(delay)
                continue
            return replace(result, attempts=attempt)

    def _retry_delay(self, exc: FetchError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        policy = self.policy
        if exc.permanent or attempt > policy.retries:
            return None
        if exc.retry_after is not None and exc.retry_after > policy.max_backoff:
            return None  # the caller reschedules (retry_after is on the error)
        delay = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
        delay *= 0.5 + self._jitter() / 2  # jitter: workers that failed together spread out
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay

    # -- one attempt -----------------------------------------------------------

    def _attempt(self, url: str, read: _BodyReader, accept: str) -> FetchResult:
        deadline = Deadline(self.policy.deadline, clock=self._clock)
        hop = self._hop(url, url, deadline, redirected=False)
        hop, response = self._follow(hop, deadline, url, check_robots=True, accept=accept)
        with response:
            self._check_status(response, url)
            data, fmt = read(response, hop, deadline, url)
            headers = response.headers
            return FetchResult(
                url=url,
                final_url=hop.url,
                data=data,
                content_type=headers.get("Content-Type"),
                format=fmt,
                status=response.status,
                attempts=1,
                etag=headers.get("ETag"),
                last_modified=headers.get("Last-Modified"),
            )

    def _follow(
        self,
        hop: _Hop,
        deadline: Deadline,
        url: str,
        *,
        check_robots: bool,
        accept: str = ACCEPT,
    ) -> tuple[_Hop, PinnedResponse]:
        """Request ``hop`` and the redirects it leads to; the final hop and its open response."""
        redirects = 0
        while True:
            if check_robots and self.policy.respect_robots:
                if not self._robots_allow(hop, deadline, url):
                    raise FetchError("disallowed by robots.txt", permanent=True, url=url)
            response = self._open(hop, deadline, url, accept)
            if response.status not in REDIRECT_STATUSES:
                return hop, response
            with response:
                location = response.headers.get("Location")
            if not location:
                raise FetchError(
                    f"HTTP {response.status} without a Location", permanent=True, url=url
                )
            if redirects >= self.policy.max_redirects:
                raise FetchError(
                    f"too many redirects (more than {self.policy.max_redirects})",
                    permanent=True,
                    url=url,
                )
            redirects += 1
            hop = self._hop(urljoin(hop.url, location.strip()), url, deadline, redirected=True)

    def _hop(self, next_url: str, url: str, deadline: Deadline, *, redirected: bool) -> _Hop:
        """Check ``next_url`` and resolve its host (once); refuse what may not be fetched."""

        def refused(why: str, shown: str) -> FetchError:
            reason = f"redirect to {shown} refused: {why}" if redirected else why
            return FetchError(reason, permanent=True, url=url)

        try:
            parts = urlsplit(next_url)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise refused(f"invalid URL: {exc}", repr(next_url)) from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            why = f"scheme {scheme!r} not allowed (allowed: {', '.join(SCHEMES)})"
            raise refused(why if scheme else "not an absolute http(s) URL", next_url)
        if not host:
            raise refused("URL has no host", next_url)
        if parts.username is not None or parts.password is not None:
            raise refused("credentials in URLs are not allowed", host)
        literal = literal_address(host)
        if literal is None:
            try:
                host = host.encode("idna").decode("ascii").lower()
            except UnicodeError:
                raise refused(f"invalid host name {host!r}", repr(host)) from None
            if not _HOST_NAME.fullmatch(host):
                raise refused(f"invalid host name {host!r}", repr(host))
        port = port or DEFAULT_PORTS[scheme]
        addresses = self._addresses(host, port, deadline, url)
        for address in addresses:
            why = refusal(address, self.policy.allow_networks)
            if why is None:
                continue
            ip = display(address)
            if redirected:  # "redirect to 169.254.169.254 refused: link-local"
                raise refused(why if literal is not None else f"address {ip} is {why}", host)
            where = "" if literal is not None else f" of {host}"
            raise refused(f"address {ip}{where} is {why}", host)
        return _Hop(
            url=next_url,
            endpoint=Endpoint(scheme, host, port, tuple(addresses)),
            target=_request_target(parts.path, parts.query),
        )

    def _addresses(self, host: str, port: int, deadline: Deadline, url: str) -> list[IPAddress]:
        try:
            addresses = resolve(host, port, self.resolve)
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
                raise FetchError(f"host {host} not found", permanent=True, url=url) from None
            raise FetchError(
                f"cannot resolve {host}: {exc.strerror or exc}", permanent=False, url=url
            ) from None
        if deadline.expired:  # a resolver can take long; nothing here can cut it short
            raise _NotNow(str(deadline), permanent=False, url=url)
        if not addresses:
            raise FetchError(f"host {host} has no address", permanent=True, url=url)
        return addresses

    def _robots_allow(self, hop: _Hop, deadline: Deadline, url: str) -> bool:
        return self.robots.allowed(
            hop.url, lambda robots_url: self._load_robots(robots_url, hop, deadline, url)
        )

    def _load_robots(
        self, robots_url: str, hop: _Hop, deadline: Deadline, url: str
    ) -> RobotsAnswer:
        # The same host and port as the page: reuse its checked addresses, no new lookup.
        first = replace(hop, url=robots_url, target="/robots.txt")
        try:
            _, response = self._follow(first, deadline, url, check_robots=False)
            with response:
                status = response.status
                body = b""
                if 200 <= status < 300:
                    body = self._read_up_to(response, MAX_ROBOTS_BYTES, deadline, first)
        except _NotNow:
            raise  # our own limits, not the site's answer: nothing to cache
        except FetchError as exc:
            log.debug("robots.txt at %s unreachable (%s): everything allowed", robots_url, exc)
            return RobotsAnswer(None)
        return RobotsAnswer(status, body)

    def _open(
        self, hop: _Hop, deadline: Deadline, url: str, accept: str = ACCEPT
    ) -> PinnedResponse:
        endpoint = hop.endpoint
        try:
            wait = self.rate_limiter.reserve(endpoint.host, max_wait=deadline.remaining())
        except RateLimited as exc:
            raise _NotNow(
                f"rate limit: next request to {endpoint.host} allowed in {exc.wait:.1f} s",
                permanent=False,
                url=url,
                retry_after=exc.wait,
            ) from None
        except LimiterUnavailable as exc:
            raise FetchError(str(exc), permanent=False, url=url) from None
        if wait > 0:
            self._sleep(wait)
        headers = {
            "Host": endpoint.host_header,
            "User-Agent": self.policy.user_agent,
            "Accept": accept,
            "Accept-Encoding": "identity",  # compressed bodies would dodge the byte limit
            "Connection": "close",
        }
        try:
            return open_pinned(
                endpoint,
                hop.target,
                headers,
                deadline=deadline,
                connect_timeout=self.policy.connect_timeout,
                read_timeout=self.policy.read_timeout,
                ca_certs=self._ca_certs,
            )
        except Exception as exc:
            raise self._failure(exc, hop, deadline, url) from exc

    def _failure(self, exc: Exception, hop: _Hop, deadline: Deadline, url: str) -> Exception:
        """The FetchError a network-level exception stands for (or ``exc`` if unknown)."""
        where = f"{hop.endpoint.host}:{hop.endpoint.port}"
        if isinstance(exc, DeadlineExceeded) or deadline.expired:
            return _NotNow(str(deadline), permanent=False, url=url)
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = exc.verify_message or exc.reason or str(exc)
            why = f"TLS certificate of {hop.endpoint.host} not accepted: {detail}"
            return FetchError(why, permanent=True, url=url)
        if isinstance(exc, ssl.SSLError | Urllib3SSLError):
            return FetchError(f"TLS error with {where}: {exc}", permanent=False, url=url)
        if isinstance(exc, NewConnectionError):
            return FetchError(f"cannot connect to {where}: {_cause(exc)}", permanent=False, url=url)
        if isinstance(exc, ConnectTimeoutError):
            why = f"connecting to {where} timed out after {self.policy.connect_timeout:g} s"
            return FetchError(why, permanent=False, url=url)
        if isinstance(exc, ReadTimeoutError | TimeoutError):
            why = f"no data from {where} for {self.policy.read_timeout:g} s"
            return FetchError(why, permanent=False, url=url)
        if isinstance(exc, ProtocolError | ConnectionError | http.client.IncompleteRead):
            return FetchError(
                f"connection to {where} broken: {_cause(exc)}", permanent=False, url=url
            )
        if isinstance(exc, http.client.HTTPException):
            why = f"invalid HTTP response from {where}: {type(exc).__name__}"
            return FetchError(why, permanent=True, url=url)
        if isinstance(exc, OSError):
            return FetchError(
                f"network error with {where}: {_cause(exc)}", permanent=False, url=url
            )
        return exc

    # -- the response ----------------------------------------------------------

    def _check_status(self, response: PinnedResponse, url: str) -> None:
        status = response.status
        if status in OK_STATUSES:
            return
        transient = status in RETRY_STATUSES
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise FetchError(
            f"HTTP {status}",
            permanent=not transient,
            url=url,
            status=status,
            retry_after=retry_after if transient else None,
        )

    def _read_image(
        self, response: PinnedResponse, hop: _Hop, deadline: Deadline, url: str
    ) -> tuple[bytes, str]:
        limit = self.policy.max_bytes
        self._check_length(response, limit, url)
        content_type = response.headers.get("Content-Type")
        if (why := content_type_refusal(content_type)) is not None:
            raise FetchError(why, permanent=True, url=url)
        encoding = media_type(response.headers.get("Content-Encoding"))
        if encoding not in ("", "identity"):
            raise FetchError(f"unexpected Content-Encoding {encoding}", permanent=True, url=url)

        def check(head: bytes) -> None:  # refuses HTML before reading it all
            self._sniff(head, content_type, url)

        body = self._read_body(response, limit, deadline, hop, url, check)
        return body, self._sniff(body, content_type, url)

    def _read_document(
        self,
        response: PinnedResponse,
        hop: _Hop,
        deadline: Deadline,
        url: str,
        kinds: tuple[str, ...],
    ) -> tuple[bytes, str]:
        limit = self.policy.max_document_bytes
        self._check_length(response, limit, url)
        content_type = response.headers.get("Content-Type")
        served = media_type(content_type)
        accepted = [t for kind in kinds for t in DOCUMENT_TYPES[kind]]
        gzip_file_ok = "xml" in kinds
        if not (served in accepted or served in UNTYPED or (gzip_file_ok and served in GZIP_TYPES)):
            why = f"not a document: served as {served} (accepted: {', '.join(accepted)})"
            raise FetchError(why, permanent=True, url=url)
        encoding = media_type(response.headers.get("Content-Encoding"))
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise FetchError(f"unexpected Content-Encoding {encoding}", permanent=True, url=url)
        compressed = encoding not in ("", "identity")

        def check(head: bytes) -> None:  # an image served as a page: stop before reading it
            if not compressed:
                _refuse_binary(head, served, url)

        data = self._read_body(response, limit, deadline, hop, url, check)
        if compressed:
            data = _gunzip(data, limit, url)
        if data.startswith(GZIP_MAGIC):
            if not gzip_file_ok:
                why = f"not a document: served as {served or 'no content type'} but gzip-compressed"
                raise FetchError(why, permanent=True, url=url)
            data = _gunzip(data, limit, url)
        if not data:
            raise FetchError("empty body", permanent=True, url=url)
        return data, _document_format(data, served, kinds, url)

    @staticmethod
    def _check_length(response: PinnedResponse, limit: int, url: str) -> None:
        length = _content_length(response.headers.get("Content-Length"))
        if length is not None and length > limit:
            why = f"body exceeds {limit} bytes (Content-Length: {length})"
            raise FetchError(why, permanent=True, url=url)

    def _read_body(
        self,
        response: PinnedResponse,
        limit: int,
        deadline: Deadline,
        hop: _Hop,
        url: str,
        check_head: Callable[[bytes], None],
    ) -> bytes:
        """The whole body, refused past ``limit`` bytes; ``check_head`` sees its first bytes."""
        body = bytearray()
        checked = False
        while True:
            # One byte past the limit is enough to know it was exceeded.
            wanted = min(CHUNK_BYTES, limit + 1 - len(body))
            chunk = self._read(response, wanted, deadline, hop, url)
            if not chunk:
                break
            body += chunk
            if len(body) > limit:
                raise FetchError(f"body exceeds {limit} bytes", permanent=True, url=url)
            if not checked and len(body) >= SNIFF_BYTES:
                check_head(bytes(body[:SNIFF_BYTES]))
                checked = True
        if not body:
            raise FetchError("empty body", permanent=True, url=url)
        if not checked:
            check_head(bytes(body))
        return bytes(body)

    def _read_up_to(
        self, response: PinnedResponse, limit: int, deadline: Deadline, hop: _Hop
    ) -> bytes:
        """At most ``limit`` bytes of the body; the rest is not read."""
        body = bytearray()
        while len(body) < limit:
            wanted = min(CHUNK_BYTES, limit - len(body))
            chunk = self._read(response, wanted, deadline, hop, hop.url)
            if not chunk:
                break
            body += chunk
        return bytes(body)

    def _read(
        self, response: PinnedResponse, amount: int, deadline: Deadline, hop: _Hop, url: str
    ) -> bytes:
        try:
            chunk = response.read(amount)
        except Exception as exc:
            raise self._failure(exc, hop, deadline, url) from exc
        # A watchdog shutdown reads as a clean end of body: never take it for one.
        if response.deadline_passed:
            raise _NotNow(str(deadline), permanent=False, url=url)
        return chunk

    @staticmethod
    def _sniff(body: bytes, content_type: str | None, url: str) -> str:
        head = bytes(body[:SNIFF_BYTES])
        if (why := bytes_refusal(head, content_type)) is not None:
            raise FetchError(why, permanent=True, url=url)
        fmt = _sniff_image(head)
        assert fmt is not None  # bytes_refusal passed
        return fmt


# -- documents ---------------------------------------------------------------------


def _document_format(data: bytes, served: str, kinds: tuple[str, ...], url: str) -> str:
    """The kind of document ``data`` is ("html" or "xml"), or a FetchError saying why none."""
    _refuse_binary(data, served, url)
    for kind in kinds:
        if served in DOCUMENT_TYPES[kind]:
            return kind
    # No type, a generic one, or a gzip file: the bytes decide.
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n\f")
    if "html" in kinds and looks_like_html(text):
        return "html"
    if "xml" in kinds and text.startswith(b"<"):
        return "xml"
    if "html" in kinds and text.startswith(b"<"):
        return "html"  # XHTML opening with <?xml, or markup that skips <html>
    wanted = " or ".join(kind.upper() for kind in kinds)
    why = f"not a document: served as {served or 'no content type'} but the bytes are not {wanted}"
    raise FetchError(why, permanent=True, url=url)


def _refuse_binary(data: bytes, served: str, url: str) -> None:
    """Refuse an image, a PDF or the like that was served where a page was expected."""
    if data.startswith(GZIP_MAGIC):
        return  # decompressed, and checked, later
    if (other := sniff_format(data[:1024])) is not None:
        why = f"not a document: served as {served or 'no content type'} but the bytes are {other}"
        raise FetchError(why, permanent=True, url=url)


def _gunzip(data: bytes, limit: int, url: str) -> bytes:
    """``data`` decompressed (every gzip member), refused as soon as it passes ``limit`` bytes."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer
        try:
            # max_length: a small bomb never inflates past one byte over the limit.
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise FetchError(f"invalid gzip data: {exc}", permanent=True, url=url) from None
        if len(out) > limit:
            why = f"body exceeds {limit} bytes once decompressed"
            raise FetchError(why, permanent=True, url=url)
        if not inflater.eof:
            raise FetchError("invalid gzip data: truncated", permanent=True, url=url)
        data = inflater.unused_data
        if not data.startswith(GZIP_MAGIC):
            break  # trailing garbage: gzip(1) ignores it too
    return bytes(out)

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
   pinned to a checked one (:mod:`~indexer.sources.hops`,
   :mod:`~indexer.sources.netguard`, :mod:`~indexer.sources.pinned`);
3. the origin's robots.txt, loaded through these same steps and cached
   (:mod:`~indexer.sources.robots`);
4. a slot from the per-host rate limiter (:mod:`~indexer.sources.ratelimit`);
5. the response: status, Content-Length against the byte limit, Content-Type,
   then the body, streamed under the byte limit, its first bytes sniffed
   (:mod:`~indexer.sources.responses`, :mod:`~indexer.sources.content`,
   :mod:`~indexer.sources.documents`).

One attempt (redirects, robots.txt, waiting for a rate-limit slot and the body
included) has one deadline. Transient failures (:mod:`~indexer.sources.failures`)
are tried again with exponential backoff and jitter
(:mod:`~indexer.sources.retries`); everything else is permanent and reported
after the first attempt. The limits are a :class:`FetchPolicy`
(:mod:`~indexer.sources.policy`).
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from indexer.sources.documents import document_kinds
from indexer.sources.failures import FetchError, NotNow, network_failure
from indexer.sources.hops import Hop, plan_hop
from indexer.sources.netguard import Resolver
from indexer.sources.pinned import Deadline, PinnedResponse, open_pinned
from indexer.sources.policy import FetchPolicy
from indexer.sources.ratelimit import (
    LimiterUnavailable,
    LocalRateLimiter,
    RateLimited,
    RateLimiter,
    rate_limiter_from_settings,
)
from indexer.sources.responses import ResponseReader
from indexer.sources.retries import retry_delay
from indexer.sources.robots import (
    MAX_ROBOTS_BYTES,
    RobotsAnswer,
    RobotsCache,
    robots_url,
    rules_from,
)

if TYPE_CHECKING:
    from indexer.config import Settings

# The Fetcher, what it takes, returns and raises: callers import them from here.
__all__ = ["FetchError", "FetchPolicy", "FetchResult", "Fetcher"]

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ACCEPT = "image/jpeg,image/png,image/webp,image/gif,image/bmp;q=0.9,*/*;q=0.1"

#: Reads an open response's body: its bytes and format, or raises FetchError.
_BodyReader = Callable[[ResponseReader], tuple[bytes, str]]


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
        return self._fetch(url, ResponseReader.image, ACCEPT)

    def fetch_document(self, url: str, kinds: Sequence[str] = ("html",)) -> FetchResult:
        """Download the HTML page or XML document at ``url`` or raise :class:`FetchError`.

        ``kinds`` says what is wanted, from
        :data:`~indexer.sources.documents.DOCUMENT_TYPES` ("html", "xml"); anything
        served as another type is refused. ``data`` holds the bytes, decompressed
        if they came gzip-compressed (only "xml" accepts a gzip file, for
        ``sitemap.xml.gz``), and ``format`` the kind they turned out to be. The
        body is limited to ``policy.max_document_bytes``, decompressed or not.
        """
        wanted, accept = document_kinds(kinds)
        return self._fetch(url, lambda reader: reader.document(wanted), accept)

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
                delay = retry_delay(exc, attempt, self.policy, self._jitter)
                if delay is None:
                    log.info("fetch failed after %d attempt(s): %s: %s", attempt, url, exc.reason)
                    raise
                log.info("fetch %s: %s; retry in %.2f s", url, exc.reason, delay)
                self._sleep(delay)
                continue
            return replace(result, attempts=attempt)

    # -- one attempt -----------------------------------------------------------

    def _attempt(self, url: str, read: _BodyReader, accept: str) -> FetchResult:
        deadline = Deadline(self.policy.deadline, clock=self._clock)
        hop = self._hop(url, url, deadline, redirected=False)
        hop, response = self._follow(hop, deadline, url, check_robots=True, accept=accept)
        with response:
            reader = ResponseReader(response, hop, deadline, url, self.policy)
            reader.check_status()
            data, fmt = read(reader)
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
        hop: Hop,
        deadline: Deadline,
        url: str,
        *,
        check_robots: bool,
        accept: str = ACCEPT,
    ) -> tuple[Hop, PinnedResponse]:
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

    def _hop(self, next_url: str, url: str, deadline: Deadline, *, redirected: bool) -> Hop:
        return plan_hop(
            next_url,
            url,
            deadline,
            redirected=redirected,
            resolver=self.resolve,
            allow_networks=self.policy.allow_networks,
        )

    def _robots_allow(self, hop: Hop, deadline: Deadline, url: str) -> bool:
        return self.robots.allowed(
            hop.url, lambda robots_url: self._load_robots(robots_url, hop, deadline, url)
        )

    def _load_robots(self, robots_url: str, hop: Hop, deadline: Deadline, url: str) -> RobotsAnswer:
        # The same host and port as the page: reuse its checked addresses, no new lookup.
        first = replace(hop, url=robots_url, target="/robots.txt")
        try:
            _, response = self._follow(first, deadline, url, check_robots=False)
            with response:
                status = response.status
                body = b""
                if 200 <= status < 300:
                    reader = ResponseReader(response, first, deadline, first.url, self.policy)
                    body = reader.up_to(MAX_ROBOTS_BYTES)
        except NotNow:
            raise  # our own limits, not the site's answer: nothing to cache
        except FetchError as exc:
            log.debug("robots.txt at %s unreachable (%s): everything allowed", robots_url, exc)
            return RobotsAnswer(None)
        return RobotsAnswer(status, body)

    def _open(self, hop: Hop, deadline: Deadline, url: str, accept: str = ACCEPT) -> PinnedResponse:
        endpoint = hop.endpoint
        try:
            wait = self.rate_limiter.reserve(endpoint.host, max_wait=deadline.remaining())
        except RateLimited as exc:
            raise NotNow(
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
            raise network_failure(exc, endpoint, deadline, url, self.policy) from exc

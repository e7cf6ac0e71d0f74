"""Crawl a shop's site for product images, and tell what changed since the last crawl.

:func:`crawl` walks a site breadth-first from a start URL: a page, or a sitemap
(or sitemap index), which it recognises by its content type. More seeds can come
from a ``sitemap`` URL and from the ``Sitemap:`` lines of robots.txt; their pages
start at depth 0 like the start URL. Every request goes through the
:class:`~indexer.sources.fetch.Fetcher` (address checks, robots.txt, rate limit,
retries, byte limits). The crawl

* stays on the start URL's site (same scheme, host and port; ``www.shop.example``
  and ``shop.example`` are one site) unless ``same_site=False``; links elsewhere
  are listed in :attr:`CrawlResult.external`, never fetched;
* follows links up to ``max_depth`` clicks from a seed and reads at most
  ``max_pages`` pages (:attr:`CrawlResult.truncated` says the limit cut it short);
* skips links to files that are never pages (images, PDFs, archives, …);
* honours ``<meta name="robots">`` ``nofollow`` and ``noindex``;
* records every page or sitemap it could not read in :attr:`CrawlResult.failures`,
  with the fetcher's reason, and carries on.

Product pages (:func:`~indexer.sources.pages.is_product_page`, or the ``is_product``
given) yield one :class:`~indexer.sources.records.SourceRecord` per image URL
(:mod:`~indexer.sources.pages` says which images count): ``page_url`` and
``source_url`` are the page, ``title`` its title, ``product_id`` the SKU or
product id in its markup, else its canonical URL, else its URL. An image found on
several pages belongs to the first page that names it in its metadata (og:image,
JSON-LD), else to the first page that shows it.

Re-crawling: the catalog keeps, per image URL, the page it came from and a
*fingerprint* of its bytes (their sha256, which is the item id, or an ETag);
:meth:`CrawlResult.images` gives them as :class:`ImageState`. After the next crawl,
and after fetching its images, ``diff_crawls(previous, current.with_fingerprints(
{url: sha256}))`` sorts every image URL into new, changed, removed, unchanged and
unverified (see :class:`CrawlDiff`). An image is only called removed when this
crawl is sure of it, so a page that timed out never deletes its product.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from posixpath import splitext
from urllib.parse import urlsplit, urlunsplit

from indexer.sources.fetch import Fetcher, FetchError
from indexer.sources.pages import DEFAULT_PORTS, Page, is_product_page, normalize_url, parse_page
from indexer.sources.records import SourceRecord
from indexer.sources.sitemap import SitemapError, parse_sitemap

log = logging.getLogger(__name__)

#: Links to these are never pages: not worth a request out of the page budget.
SKIPPED_LINK_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .gif .webp .bmp .svg .ico .tif .tiff .avif .heic .pdf .zip .gz .tgz"
    " .rar .7z .mp3 .mp4 .m4a .mov .avi .webm .css .js .json .txt .csv .doc .docx .xls"
    " .xlsx .ppt .pptx .woff .woff2 .ttf .exe .dmg .apk".split()
)


@dataclass(frozen=True, slots=True)
class CrawlFailure:
    """A page or sitemap the crawl could not read, and why."""

    url: str
    reason: str
    permanent: bool  # False: a later crawl may read it (a timeout, HTTP 503)
    status: int | None = None
    kind: str = "page"  # "page", "sitemap" or "robots"


@dataclass(frozen=True, slots=True)
class ImageState:
    """One image of a crawl, as a re-crawl compares it: where it was, and its bytes' fingerprint.

    ``fingerprint`` is anything that changes when the bytes do: their sha256 (the
    item id), or the ETag they were served with. None when not known.
    """

    url: str
    page_url: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """What a crawl found: the images (as records), the pages read, and what failed."""

    start_url: str
    records: tuple[SourceRecord, ...] = ()
    pages: tuple[str, ...] = ()  # pages read, where they were (after redirects)
    failures: tuple[CrawlFailure, ...] = ()
    sitemaps: tuple[str, ...] = ()  # sitemaps read
    external: tuple[str, ...] = ()  # links off the site, not followed
    truncated: bool = False  # max_pages or max_sitemaps left pages unread
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # image URL -> fingerprint

    @property
    def complete(self) -> bool:
        """Did the crawl see the whole site? Not when cut short or when a read may yet succeed."""
        return not self.truncated and all(failure.permanent for failure in self.failures)

    def images(self) -> tuple[ImageState, ...]:
        """Each image URL with its page and fingerprint: what to keep for the next re-crawl."""
        return tuple(
            ImageState(record.url, record.page_url, self.fingerprints.get(record.url))
            for record in self.records
            if record.url is not None
        )

    def with_fingerprints(self, fingerprints: Mapping[str, str]) -> CrawlResult:
        """A copy that also knows these image fingerprints (image URL -> sha256 or ETag)."""
        return replace(self, fingerprints={**self.fingerprints, **fingerprints})


@dataclass(frozen=True, slots=True)
class CrawlDiff:
    """Image URLs sorted by what happened to them since the previous crawl (each sorted).

    * ``new``: found now, not before: fetch and add them;
    * ``changed``: found both times, and the fingerprints differ: fetch again;
    * ``removed``: not found now, and the crawl is sure they are gone (their page
      was read without them, or answered for good with an error such as 404, or
      the crawl was complete and no longer reaches the page): delete them;
    * ``unchanged``: found both times with the same fingerprint;
    * ``unverified``: found both times but a fingerprint is missing, or not found
      now but their page could not be checked (a transient failure, a crawl cut
      short): keep them as they are and look again next time.
    """

    new: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()


def crawl(
    start_url: str,
    fetcher: Fetcher,
    *,
    max_depth: int = 2,
    max_pages: int = 500,
    same_site: bool = True,
    sitemap: str | None = None,
    sitemaps_from_robots: bool = False,
    max_sitemaps: int = 50,
    is_product: Callable[[Page], bool] = is_product_page,
) -> CrawlResult:
    """Crawl the site at ``start_url`` (a page or a sitemap) for product images.

    ``sitemap`` (a URL, relative ones resolved against ``start_url``) and, with
    ``sitemaps_from_robots``, the sitemaps robots.txt lists add seeds;
    ``max_sitemaps`` bounds how many sitemaps are read. Raises ValueError for
    bad arguments; everything that goes wrong on the site ends up in the result.
    """
    if max_depth < 0:
        raise ValueError(f"max_depth must be 0 or more, not {max_depth}")
    if max_pages < 1:
        raise ValueError(f"max_pages must be 1 or more, not {max_pages}")
    if max_sitemaps < 0:
        raise ValueError(f"max_sitemaps must be 0 or more, not {max_sitemaps}")
    start = normalize_url(start_url)
    if start is None:
        raise ValueError(f"the start URL must be an absolute http(s) URL, not {start_url!r}")
    sitemap_url = None
    if sitemap is not None and (sitemap_url := normalize_url(sitemap, start)) is None:
        raise ValueError(f"the sitemap must be an http(s) URL, not {sitemap!r}")
    run = _Crawl(
        start,
        fetcher,
        max_depth=max_depth,
        max_pages=max_pages,
        same_site=same_site,
        max_sitemaps=max_sitemaps,
        is_product=is_product,
    )
    return run.run(sitemap_url, sitemaps_from_robots)


def diff_crawls(previous: CrawlResult | Iterable[ImageState], current: CrawlResult) -> CrawlDiff:
    """Compare the images of ``previous`` (a crawl, or the states kept from one) with ``current``.

    Changes are seen through fingerprints: give both sides theirs
    (:meth:`CrawlResult.with_fingerprints`, or :class:`ImageState` from the
    catalog), else images found both times are unverified, not unchanged.
    """
    states = previous.images() if isinstance(previous, CrawlResult) else previous
    before = {state.url: state for state in states}
    now = {state.url: state for state in current.images()}
    read = {_fold(page) for page in current.pages}
    failed = {_fold(f.url): f.permanent for f in current.failures if f.kind == "page"}

    def gone(page_url: str | None) -> bool:
        if page_url is None:
            return current.complete
        key = _fold(normalize_url(page_url) or page_url)
        if key in read:
            return True  # the page was read, and the image is not on it any more
        if key in failed:
            return failed[key]
        return current.complete

    new, changed, removed, unchanged, unverified = [], [], [], [], []
    for url, state in now.items():
        old = before.get(url)
        if old is None:
            new.append(url)
        elif old.fingerprint is None or state.fingerprint is None:
            unverified.append(url)
        elif old.fingerprint != state.fingerprint:
            changed.append(url)
        else:
            unchanged.append(url)
    for url, old in before.items():
        if url not in now:
            (removed if gone(old.page_url) else unverified).append(url)
    groups = (new, changed, removed, unchanged, unverified)
    return CrawlDiff(*(tuple(sorted(urls)) for urls in groups))


# -- the site's bounds ----------------------------------------------------------------


def _bare_host(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def site_key(url: str) -> tuple[str, str, int]:
    """(scheme, host without ``www.``, port) of a normalised URL: one site, one key."""
    parts = urlsplit(url)
    scheme = parts.scheme
    return scheme, _bare_host(parts.hostname or ""), parts.port or DEFAULT_PORTS.get(scheme, 0)


def _fold(url: str) -> str:
    """``url`` with ``www.`` dropped from its host: the same page under either name."""
    parts = urlsplit(url)
    if not (parts.hostname or "").startswith("www."):
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc[4:]))


def _is_file_link(url: str) -> bool:
    return splitext(urlsplit(url).path.lower())[1] in SKIPPED_LINK_EXTENSIONS


class _Crawl:
    """The state of one crawl: the queue, what was seen, read, found and failed."""

    def __init__(
        self,
        start: str,
        fetcher: Fetcher,
        *,
        max_depth: int,
        max_pages: int,
        same_site: bool,
        max_sitemaps: int,
        is_product: Callable[[Page], bool],
    ) -> None:
        self.start = start
        self.fetcher = fetcher
        self.max_depth = max_depth
        self.max_pages = max_pages
        self.same_site = same_site
        self.max_sitemaps = max_sitemaps
        self.is_product = is_product
        self.sites = {site_key(start)}
        self.queue: deque[tuple[str, int]] = deque()
        self.seen: set[str] = set()  # folded URLs queued (or refused a place in the queue)
        self.read: set[str] = set()  # folded URLs of the pages read
        self.fetched = 0
        self.records: dict[str, tuple[int, SourceRecord]] = {}  # image URL -> (rank, record)
        self.pages: list[str] = []
        self.failures: list[CrawlFailure] = []
        self.sitemaps_seen: set[str] = set()
        self.sitemap_fetches = 0
        self.sitemaps: list[str] = []
        self.external: dict[str, None] = {}  # an ordered set
        self.truncated = False

    def run(self, sitemap: str | None, sitemaps_from_robots: bool) -> CrawlResult:
        self._enqueue(self.start, 0)
        if sitemap is not None:
            self._read_sitemaps([sitemap])
        if sitemaps_from_robots:
            self._read_sitemaps(self._robots_sitemaps())
        while self.queue:
            url, depth = self.queue.popleft()
            if _fold(url) not in self.read:  # it may have been reached through a redirect
                self._visit(url, depth)
        result = CrawlResult(
            start_url=self.start,
            records=tuple(record for _, record in self.records.values()),
            pages=tuple(self.pages),
            failures=tuple(self.failures),
            sitemaps=tuple(self.sitemaps),
            external=tuple(self.external),
            truncated=self.truncated,
        )
        log.info(
            "crawled %s: %d pages, %d sitemaps, %d images, %d failures%s",
            self.start,
            len(result.pages),
            len(result.sitemaps),
            len(result.records),
            len(result.failures),
            " (truncated)" if result.truncated else "",
        )
        return result

    # -- the queue ---------------------------------------------------------------

    def _in_site(self, url: str) -> bool:
        return not self.same_site or site_key(url) in self.sites

    def _enqueue(self, url: str, depth: int) -> None:
        key = _fold(url)
        if key in self.seen or (_is_file_link(url) and url != self.start):
            return
        if not self._in_site(url):
            self.external[url] = None
            return
        self.seen.add(key)
        # Everything queued gets read: the queue never outgrows the page budget.
        if self.fetched + len(self.queue) >= self.max_pages:
            self.truncated = True
            return
        self.queue.append((url, depth))

    def _fail(self, url: str, exc: FetchError, kind: str) -> None:
        log.info("crawl: %s %s not read: %s", kind, url, exc.reason)
        self.failures.append(CrawlFailure(url, exc.reason, exc.permanent, exc.status, kind))

    # -- pages -------------------------------------------------------------------

    def _visit(self, url: str, depth: int) -> None:
        self.fetched += 1
        # Only the start URL may be a sitemap; a link is read as a page.
        kinds = ("html", "xml") if url == self.start else ("html",)
        try:
            result = self.fetcher.fetch_document(url, kinds)
        except FetchError as exc:
            self._fail(url, exc, "page")
            return
        final = normalize_url(result.final_url) or url
        if final != url:
            if url == self.start and site_key(final)[1] == site_key(url)[1]:
                self.sites.add(site_key(final))  # http -> https, or a port: still the site
            if not self._in_site(final):
                reason = f"redirected off the site to {final}"
                self.failures.append(CrawlFailure(url, reason, True, result.status))
                return
            if _fold(final) in self.read:
                return
        self.read.add(_fold(final))
        self.seen.add(_fold(final))
        if result.format == "xml":
            self._read_sitemaps(self._take_sitemap(final, result.data))
            return
        try:
            page = parse_page(result.data, final, result.content_type)
        except Exception as exc:  # a parser bug on one odd page must not end the crawl
            log.warning("crawl: cannot parse %s", final, exc_info=True)
            reason = f"cannot parse the page: {type(exc).__name__}: {exc}"
            self.failures.append(CrawlFailure(url, reason, True, result.status))
            return
        self.pages.append(page.url)
        if page.index and self.is_product(page):
            self._collect(page)
        if page.follow and depth < self.max_depth:
            for link in page.links:
                self._enqueue(link, depth + 1)

    def _collect(self, page: Page) -> None:
        product_id = page.product_id
        if product_id is None:
            canonical = page.canonical
            product_id = canonical if canonical and self._in_site(canonical) else page.url
        for image in page.images:
            rank = 1 if image.source == "img" else 0  # metadata names the product's own images
            held = self.records.get(image.url)
            if held is not None and held[0] <= rank:
                continue
            record = SourceRecord(
                path=None,
                url=image.url,
                product_id=product_id,
                title=page.title,
                source_url=page.url,
                page_url=page.url,
            )
            self.records[image.url] = (rank, record)

    # -- sitemaps ----------------------------------------------------------------

    def _robots_sitemaps(self) -> list[str]:
        try:
            listed = self.fetcher.robots_sitemaps(self.start)
        except FetchError as exc:
            self._fail(self.start, exc, "robots")
            return []
        return [url for loc in listed if (url := normalize_url(loc, self.start))]

    def _read_sitemaps(self, urls: list[str]) -> None:
        pending = deque(urls)
        while pending:
            url = pending.popleft()
            if url in self.sitemaps_seen:
                continue
            self.sitemaps_seen.add(url)
            if not self._in_site(url):
                self.external[url] = None
                continue
            if self.sitemap_fetches >= self.max_sitemaps:
                log.info("crawl: more than %d sitemaps; %s not read", self.max_sitemaps, url)
                self.truncated = True
                continue
            self.sitemap_fetches += 1
            try:
                result = self.fetcher.fetch_document(url, ("xml",))
            except FetchError as exc:
                self._fail(url, exc, "sitemap")
                continue
            pending.extend(self._take_sitemap(url, result.data))

    def _take_sitemap(self, url: str, data: bytes) -> list[str]:
        """Queue the pages a sitemap lists; the sitemaps it lists, to be read next."""
        try:
            sitemap = parse_sitemap(data)
        except SitemapError as exc:
            self.failures.append(CrawlFailure(url, str(exc), True, kind="sitemap"))
            return []
        self.sitemaps.append(url)
        for loc in sitemap.pages:
            if (page := normalize_url(loc, url)) is not None:
                self._enqueue(page, 0)
        return [nested for loc in sitemap.sitemaps if (nested := normalize_url(loc, url))]

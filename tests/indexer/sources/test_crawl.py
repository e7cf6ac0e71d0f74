"""indexer.sources.crawl (and Fetcher.fetch_document) against a small shop on a real local server.

The shop lives at ``http://shop.test:<port>``: an injected resolver sends
``shop.test``, ``www.shop.test`` and ``other.test`` to 127.0.0.1, and the test
settings allow 127.0.0.0/8 and nothing else. An audit hook blocks (and records)
every connection outside loopback, so a redirect to a private address is shown
to be refused before any packet leaves.

The shop: a home page links to two category pages, which link to product pages
(og:image, a JSON-LD Product, an ``<img srcset>``, a logo and a tracking pixel)
and to pages that fail (404, a redirect to 10.0.0.1, a photo served as a page, a
page too big, a section robots.txt disallows); product pages link one level deeper
than the crawl goes; the home page links off the site. robots.txt names a sitemap
index with a plain and a gzip-compressed sitemap. Version 2 of the shop drops a
product (its page now answers 404), adds one and changes one image.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
from images_factory import jpeg_bytes
from local_http import LocalServer, make_tls_files, responder

from indexer.config import Settings
from indexer.sources.crawl import (
    CrawlDiff,
    CrawlFailure,
    CrawlResult,
    ImageState,
    crawl,
    diff_crawls,
    site_key,
)
from indexer.sources.fetch import Fetcher, FetchError
from indexer.sources.ratelimit import LocalRateLimiter

HOST = "shop.test"
MiB = 1024 * 1024

# -- every connection attempt, watched ---------------------------------------------------

# (the loopback guard and its `connections` fixture: conftest.py)

# -- the shop --------------------------------------------------------------------------


def image(name: str, version: int = 1) -> bytes:
    """The bytes of an image of the shop; only p1-og changes in version 2."""
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
    if name == "p1-og" and version == 2:
        seed += 1
    return jpeg_bytes(seed=seed)


def product_html(n: int) -> str:
    product = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": f"Product {n}",
        "sku": f"SKU-{n}",
        "image": [f"/img/p{n}-ld.jpg"],
    }
    return f"""<!DOCTYPE html>
<html><head><title>Product {n} | Shop</title>
<meta property="og:type" content="product">
<meta property="og:title" content="Product {n}">
<meta property="og:image" content="/img/p{n}-og.jpg">
<link rel="canonical" href="/p/{n}.html">
<script type="application/ld+json">{json.dumps(product)}</script>
</head><body>
<header><a href="/"><img src="/img/logo.png" alt="Shop"></a></header>
<main>
  <h1>Product {n}</h1>
  <img srcset="/img/p{n}-320.jpg 320w, /img/p{n}-1280.jpg 1280w" src="/img/p{n}-320.jpg">
  <img src="/t/pixel.gif?p={n}" width="1" height="1" alt="">
  <a href="/deep/{n}.html">the making of product {n}</a>
  <a href="/c/shoes.html">more shoes</a>
</main></body></html>"""


def page(title: str, links: list[str], extra: str = "") -> bytes:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
        f'<header><img src="/img/logo.png"></header>{extra}<ul>{anchors}</ul></body></html>'
    ).encode()


def urlset(*locs: str) -> bytes:
    urls = "".join(f"<url><loc>{loc}</loc></url>" for loc in locs)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    ).encode()


class Shop:
    """The shop's routes on ``server``, in version 1 or 2."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server

    def url(self, path: str = "/", host: str = HOST) -> str:
        return f"http://{host}:{self.server.port}{path}"

    def products(self, version: int) -> list[int]:
        return [1, 2, 3] if version == 1 else [1, 3, 5]

    def build(self, version: int = 1) -> Shop:
        server = self.server
        server.routes.clear()
        www = self.url("/p/3.html", host=f"www.{HOST}")
        shoes = [1, 2] if version == 1 else [1, 2, 5]  # version 2: /p/2.html is gone (404)
        server.serve(
            "/",
            page(
                "Shop",
                [
                    "/c/shoes.html",
                    "/c/bags.html#top",
                    self.url("/external.html", host="other.test"),
                    "https://elsewhere.test/",
                    "mailto:shop@shop.test",
                    "javascript:openCart()",
                    "tel:+441234",
                    "/img/banner.jpg",
                    "/catalogue.pdf",
                    "#main",
                ],
            ),
            "text/html; charset=utf-8",
        )
        server.serve(
            "/c/shoes.html",
            page(
                "Shoes",
                [
                    *(f"/p/{n}.html" for n in shoes),
                    "/p/gone.html",
                    "/p/evil.html",
                    "/p/photo.html",
                    "/p/big.html",
                    "/private/p9.html",
                ],
                # A listing: products in an ItemList, thumbnails. Not a product page.
                extra=(
                    '<script type="application/ld+json">{"@type": "ItemList", "itemListElement":'
                    ' [{"@type": "Product", "sku": "SKU-1", "image": "/img/p1-og.jpg"}]}</script>'
                    '<img src="/img/p1-320.jpg">'
                ),
            ),
            "text/html",
        )
        server.serve("/c/bags.html", page("Bags", [www, "/p/1.html#reviews"]), "text/html")
        for n in self.products(version):
            if n == 2 and version == 2:
                continue
            server.serve(f"/p/{n}.html", product_html(n).encode(), "text/html")
            for name in (f"p{n}-og", f"p{n}-ld", f"p{n}-320", f"p{n}-1280"):
                server.serve(f"/img/{name}.jpg", image(name, version), headers={"ETag": name})
        server.serve("/p/4.html", product_html(4).encode(), "text/html")  # in the sitemap only
        for n in (1, 2, 3, 5):
            server.serve(f"/deep/{n}.html", page("Deeper", []), "text/html")
        server.serve("/external.html", page("Elsewhere", []), "text/html")
        server.serve("/private/p9.html", product_html(9).encode(), "text/html")
        server.redirect("/p/evil.html", "http://10.0.0.1/admin")
        server.serve("/p/photo.html", image("photo"), "image/jpeg")
        server.serve("/p/big.html", b"<!DOCTYPE html><html>" + b" " * (5 * MiB + 1), "text/html")
        server.serve("/img/logo.png", image("logo"), "image/png")
        server.serve(
            "/robots.txt",
            (
                f"User-agent: *\nDisallow: /private/\nSitemap: {self.url('/sitemap_index.xml')}\n"
            ).encode(),
            "text/plain",
        )
        index = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            "<sitemap><loc>/sitemap-products.xml</loc></sitemap>"
            f"<sitemap><loc>{self.url('/sitemap-more.xml.gz')}</loc></sitemap>"
            "</sitemapindex>"
        )
        server.serve("/sitemap_index.xml", index.encode(), "application/xml")
        server.serve(
            "/sitemap-products.xml",
            urlset(
                self.url("/p/1.html"),
                self.url("/p/4.html"),
                self.url("/p/x.html", host="other.test"),
            ),
            "text/xml",
        )
        server.serve(
            "/sitemap-more.xml.gz",
            gzip.compress(urlset(self.url("/p/2.html"))),
            "application/x-gzip",
        )
        return self

    def images_of(self, n: int, host: str = HOST) -> set[str]:
        return {self.url(f"/img/p{n}-{kind}.jpg", host) for kind in ("og", "ld", "1280")}

    def page_of(self, n: int) -> str:
        return self.url(f"/p/{n}.html", host=f"www.{HOST}" if n == 3 else HOST)


def fake_resolver(names: tuple[str, ...] = (HOST, f"www.{HOST}", "other.test")):
    """getaddrinfo that sends the shop's made-up names to 127.0.0.1."""

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        if host not in names and host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    return resolve


@pytest.fixture
def shop() -> Iterator[Shop]:
    with LocalServer() as server:
        yield Shop(server).build(1)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        home=tmp_path,
        fetch_allow_networks=["127.0.0.0/8"],  # the local shop; nothing else internal
        fetch_per_host_interval=0,
        fetch_retries=0,
        fetch_connect_timeout=2,
        fetch_read_timeout=2,
        fetch_deadline=10,
        _env_file=None,
    )


@pytest.fixture
def fetcher(settings) -> Fetcher:
    return Fetcher.from_settings(
        settings, rate_limiter=LocalRateLimiter(0), resolve=fake_resolver()
    )


def with_policy(fetcher: Fetcher, **changes) -> Fetcher:
    return Fetcher(
        replace(fetcher.policy, **changes),
        rate_limiter=LocalRateLimiter(0),
        resolve=fake_resolver(),
    )


def document_error(fetcher: Fetcher, url: str, kinds=("html",)) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch_document(url, kinds)
    return info.value


def by_url(result: CrawlResult) -> dict[str, CrawlFailure]:
    return {failure.url: failure for failure in result.failures}


# -- Fetcher.fetch_document ---------------------------------------------------------------


def test_fetch_document_reads_a_page_and_its_validators(shop, fetcher):
    shop.server.serve(
        "/v.html",
        b"<!DOCTYPE html><p>hi</p>",
        "text/html; charset=utf-8",
        headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 May 2024 10:00:00 GMT"},
    )
    result = fetcher.fetch_document(shop.url("/v.html"))
    assert (result.data, result.format, result.status) == (b"<!DOCTYPE html><p>hi</p>", "html", 200)
    assert (result.etag, result.last_modified) == ('"v1"', "Wed, 01 May 2024 10:00:00 GMT")
    request = shop.server.requests[-1]
    assert request.headers["Accept"].startswith("text/html,application/xhtml+xml")
    assert request.headers["Accept-Encoding"] == "identity"


def test_fetch_document_kinds(shop, fetcher):
    assert fetcher.fetch_document(shop.url("/sitemap_index.xml"), ("xml",)).format == "xml"
    assert fetcher.fetch_document(shop.url("/"), ("html", "xml")).format == "html"
    shop.server.serve("/x.xhtml", b'<?xml version="1.0"?><html/>', "application/xhtml+xml")
    assert fetcher.fetch_document(shop.url("/x.xhtml")).format == "html"
    shop.server.serve("/untyped", b"\n\n<!doctype html><p>x</p>", None)
    assert fetcher.fetch_document(shop.url("/untyped"), ("html", "xml")).format == "html"
    error = document_error(fetcher, shop.url("/sitemap_index.xml"), ("html",))
    assert error.reason == (
        "not a document: served as application/xml (accepted: text/html, application/xhtml+xml)"
    )
    with pytest.raises(ValueError, match=r"unknown document kinds \['pdf'\] \(known: html, xml\)"):
        fetcher.fetch_document(shop.url("/"), ("html", "pdf"))
    with pytest.raises(ValueError, match=r"no document kind \(known: html, xml\)"):
        fetcher.fetch_document(shop.url("/"), ())


def test_a_page_served_as_image_jpeg_is_not_read_as_html(shop, fetcher):
    error = document_error(fetcher, shop.url("/p/photo.html"))
    assert error.reason == (
        "not a document: served as image/jpeg (accepted: text/html, application/xhtml+xml)"
    )
    assert error.permanent


def test_image_bytes_served_as_html_refused(shop, fetcher):
    shop.server.serve("/liar.html", image("liar"), "text/html")
    error = document_error(fetcher, shop.url("/liar.html"))
    assert error.reason == "not a document: served as text/html but the bytes are JPEG"


def test_html_over_the_document_limit_refused_before_reading(shop, fetcher):
    assert fetcher.policy.max_document_bytes == 5 * MiB
    error = document_error(fetcher, shop.url("/p/big.html"))
    assert error.reason == f"body exceeds {5 * MiB} bytes (Content-Length: {5 * MiB + 22})"
    assert error.permanent


def test_endless_html_cut_off_at_the_document_limit(shop, fetcher):
    def endless(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.end_headers()
        handler.wfile.write(b"<!DOCTYPE html><html>")
        while True:
            handler.wfile.write(b" " * 65536)

    shop.server.route("/endless.html", endless)
    small = with_policy(fetcher, max_document_bytes=100_000)
    error = document_error(small, shop.url("/endless.html"))
    assert error.reason == "body exceeds 100000 bytes"


def test_gzip_sitemap_decompressed(shop, fetcher):
    result = fetcher.fetch_document(shop.url("/sitemap-more.xml.gz"), ("xml",))
    assert result.format == "xml" and result.data == urlset(shop.url("/p/2.html"))


def test_gzip_content_encoding_decompressed_for_documents(shop, fetcher):
    body = b"<!DOCTYPE html><title>zipped</title>"
    shop.server.serve(
        "/z.html", gzip.compress(body), "text/html", headers={"Content-Encoding": "gzip"}
    )
    assert fetcher.fetch_document(shop.url("/z.html")).data == body


def test_gzip_bomb_refused_at_the_decompressed_limit(shop, fetcher):
    bomb = gzip.compress(b"<urlset>" + b" " * (50 * MiB))
    assert len(bomb) < 100_000
    shop.server.serve("/bomb.xml.gz", bomb, "application/gzip")
    error = document_error(
        with_policy(fetcher, max_document_bytes=MiB), shop.url("/bomb.xml.gz"), ("xml",)
    )
    assert error.reason == f"body exceeds {MiB} bytes once decompressed"


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "kinds", "reason"),
    [
        (gzip.compress(b"<html></html>"), "application/gzip", None, ("html",),
         "not a document: served as application/gzip (accepted: text/html, application/xhtml+xml)"),
        (gzip.compress(b"<html></html>"), None, None, ("html",),
         "not a document: served as no content type but gzip-compressed"),
        (b"\x1f\x8b\x08\x00garbage", "application/gzip", None, ("xml",),
         "invalid gzip data: "),
        (gzip.compress(b"<urlset/>")[:-12], "application/gzip", None, ("xml",),
         "invalid gzip data: truncated"),
        (b"<html/>", "text/html", {"Content-Encoding": "br"}, ("html",),
         "unexpected Content-Encoding br"),
        (b"plain words", "text/plain", None, ("html", "xml"),
         "not a document: served as text/plain (accepted: text/html, application/xhtml+xml, "
         "application/xml, text/xml)"),
        (b"plain words", None, None, ("html", "xml"),
         "not a document: served as no content type but the bytes are not HTML or XML"),
        (b"", "text/html", None, ("html",), "empty body"),
    ],
)  # fmt: skip
def test_documents_refused_with_a_reason(shop, fetcher, body, content_type, headers, kinds, reason):
    shop.server.serve("/doc", body, content_type, headers=headers)
    error = document_error(fetcher, shop.url("/doc"), kinds)
    assert error.reason.startswith(reason) and error.permanent


def test_fetch_document_redirect_to_a_private_address_refused_without_connecting(
    shop, fetcher, connections
):
    error = document_error(fetcher, shop.url("/p/evil.html"))
    assert error.reason.startswith("redirect to 10.0.0.1 refused: ")
    assert error.permanent
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in connections)


def test_fetch_document_honours_robots_txt_and_retries(shop, fetcher):
    error = document_error(fetcher, shop.url("/private/p9.html"))
    assert error.reason == "disallowed by robots.txt"
    assert shop.server.hits["/private/p9.html"] == 0
    shop.server.sequence("/flaky.html", responder(503), responder(200, b"<html/>", "text/html"))
    result = with_policy(fetcher, retries=1, backoff=0.01).fetch_document(shop.url("/flaky.html"))
    assert result.attempts == 2


def test_images_still_only_images(shop, fetcher):
    assert fetcher.fetch(shop.url("/img/p1-og.jpg")).format == "JPEG"
    with pytest.raises(FetchError, match="not an image: served as text/html"):
        fetcher.fetch(shop.url("/p/1.html"))


def test_robots_sitemaps(shop, fetcher):
    assert fetcher.robots_sitemaps(shop.url("/anything")) == [shop.url("/sitemap_index.xml")]
    shop.server.serve("/robots.txt", b"", "text/plain", status=404)
    assert fetcher.robots_sitemaps(shop.url("/")) == []


# -- crawling -------------------------------------------------------------------------------


def test_crawl_collects_product_images_and_nothing_else(shop, fetcher):
    result = crawl(shop.url("/"), fetcher)
    expected = shop.images_of(1) | shop.images_of(2) | shop.images_of(3, host=f"www.{HOST}")
    assert {record.url for record in result.records} == expected
    assert len(result.records) == len(expected)
    for n in (1, 2, 3):
        records = [r for r in result.records if f"/img/p{n}-" in (r.url or "")]
        for record in records:
            assert record.path is None
            assert record.page_url == record.source_url == shop.page_of(n)
            assert (record.title, record.product_id, record.label) == (
                f"Product {n}",
                f"SKU-{n}",
                None,
            )
    # Not a logo, a tracking pixel, the small srcset candidate, nor the category thumbnail.
    assert not any(
        word in (record.url or "") for record in result.records for word in ("logo", "pixel", "320")
    )


def test_crawl_reads_each_page_once_and_stays_on_the_site(shop, fetcher, connections):
    result = crawl(shop.url("/"), fetcher)
    assert set(result.pages) == {
        shop.url("/"),
        shop.url("/c/shoes.html"),
        shop.url("/c/bags.html"),
        shop.url("/p/1.html"),
        shop.url("/p/2.html"),
        shop.page_of(3),
    }
    hits = shop.server.hits
    assert hits["/external.html"] == 0
    assert set(result.external) == {
        shop.url("/external.html", host="other.test"),
        "https://elsewhere.test/",
    }
    assert all(count == 1 for path, count in hits.items() if path != "/robots.txt"), hits
    assert not any(path.startswith("/img/") for path in hits)  # images are fetched later
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in connections)


def test_crawl_stops_at_the_depth_limit(shop, fetcher):
    crawl(shop.url("/"), fetcher, max_depth=2)
    assert not any(path.startswith("/deep/") for path in shop.server.hits)
    crawl(shop.url("/"), fetcher, max_depth=3)
    assert shop.server.hits["/deep/1.html"] == 1


def test_crawl_depth_zero_reads_only_the_start(shop, fetcher):
    result = crawl(shop.url("/p/1.html"), fetcher, max_depth=0)
    assert result.pages == (shop.url("/p/1.html"),)
    assert {r.url for r in result.records} == shop.images_of(1)


def test_crawl_records_each_failure_and_goes_on(shop, fetcher, connections):
    result = crawl(shop.url("/"), fetcher)
    failures = by_url(result)
    assert set(failures) == {
        shop.url(path)
        for path in (
            "/p/gone.html",
            "/p/evil.html",
            "/p/photo.html",
            "/p/big.html",
            "/private/p9.html",
        )
    }
    assert failures[shop.url("/p/gone.html")].reason == "HTTP 404"
    assert failures[shop.url("/p/gone.html")].status == 404
    assert failures[shop.url("/p/evil.html")].reason.startswith("redirect to 10.0.0.1 refused")
    assert failures[shop.url("/p/photo.html")].reason.startswith(
        "not a document: served as image/jpeg"
    )
    assert failures[shop.url("/p/big.html")].reason.startswith(f"body exceeds {5 * MiB} bytes")
    assert failures[shop.url("/private/p9.html")].reason == "disallowed by robots.txt"
    assert all(f.permanent and f.kind == "page" for f in failures.values())
    assert shop.server.hits["/private/p9.html"] == 0
    assert result.complete and not result.truncated
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in connections)


def test_crawl_page_limit(shop, fetcher):
    result = crawl(shop.url("/"), fetcher, max_pages=3)
    assert result.truncated and not result.complete
    assert set(result.pages) == {shop.url("/"), shop.url("/c/shoes.html"), shop.url("/c/bags.html")}
    assert not any(path.startswith("/p/") for path in shop.server.hits)
    assert result.records == ()


def test_crawl_from_a_sitemap_index(shop, fetcher):
    result = crawl(shop.url("/sitemap_index.xml"), fetcher, max_depth=0)
    assert result.sitemaps == (
        shop.url("/sitemap_index.xml"),
        shop.url("/sitemap-products.xml"),
        shop.url("/sitemap-more.xml.gz"),
    )
    assert set(result.pages) == {shop.url(f"/p/{n}.html") for n in (1, 2, 4)}
    assert {r.url for r in result.records} == (
        shop.images_of(1) | shop.images_of(2) | shop.images_of(4)
    )
    assert shop.url("/p/x.html", host="other.test") in result.external
    assert shop.server.hits["/c/shoes.html"] == 0


def test_crawl_adds_the_sitemaps_robots_txt_lists(shop, fetcher):
    result = crawl(shop.url("/"), fetcher, max_depth=0, sitemaps_from_robots=True)
    assert shop.url("/p/4.html") in result.pages
    assert set(result.pages) == {shop.url("/")} | {shop.url(f"/p/{n}.html") for n in (1, 2, 4)}
    assert len(result.sitemaps) == 3


def test_crawl_with_a_sitemap_argument(shop, fetcher):
    result = crawl(shop.url("/"), fetcher, max_depth=0, sitemap="/sitemap-products.xml")
    assert set(result.pages) == {shop.url("/"), shop.url("/p/1.html"), shop.url("/p/4.html")}


def test_broken_and_missing_sitemaps_recorded(shop, fetcher):
    shop.server.serve("/broken.xml", b"<urlset><url>", "application/xml")
    result = crawl(shop.url("/"), fetcher, max_depth=0, sitemap="/broken.xml")
    assert by_url(result)[shop.url("/broken.xml")] == CrawlFailure(
        shop.url("/broken.xml"), "invalid XML: no element found: line 1, column 13", True,
        kind="sitemap",
    )  # fmt: skip
    result = crawl(shop.url("/"), fetcher, max_depth=0, sitemap="/nope.xml")
    assert by_url(result)[shop.url("/nope.xml")].reason == "HTTP 404"


def test_max_sitemaps(shop, fetcher):
    result = crawl(shop.url("/sitemap_index.xml"), fetcher, max_depth=0, max_sitemaps=1)
    assert result.sitemaps == (shop.url("/sitemap_index.xml"), shop.url("/sitemap-products.xml"))
    assert result.truncated


def test_everything_goes_when_same_site_is_off(shop, fetcher):
    result = crawl(shop.url("/"), fetcher, max_depth=1, same_site=False)
    assert shop.server.hits["/external.html"] == 1
    assert by_url(result)["https://elsewhere.test/"].reason == "host elsewhere.test not found"


def test_start_redirect_to_the_www_host_stays_on_the_site(shop, fetcher):
    shop.server.redirect("/start", shop.url("/c/bags.html", host=f"www.{HOST}"))
    result = crawl(shop.url("/start"), fetcher, max_depth=1)
    assert shop.page_of(3) in result.pages
    assert shop.url("/p/1.html", host=f"www.{HOST}") in result.pages


def test_start_redirect_to_https_moves_the_crawl_there(tmp_path, settings):
    tls = make_tls_files(tmp_path / "tls", [HOST])
    with LocalServer(tls=tls.server_context()) as secure, LocalServer() as plain:
        plain.redirect("/", secure.url("/", host=HOST))
        secure.serve("/", page("Home", ["/p/1.html"]), "text/html")
        secure.serve("/p/1.html", product_html(1).encode(), "text/html")
        fetcher = Fetcher.from_settings(
            settings,
            rate_limiter=LocalRateLimiter(0),
            resolve=fake_resolver(),
            ca_certs=str(tls.ca),
        )
        result = crawl(plain.url("/", host=HOST), fetcher, max_depth=1)
        assert result.pages == (secure.url("/", host=HOST), secure.url("/p/1.html", host=HOST))
        assert {r.url for r in result.records} == {
            secure.url(f"/img/p1-{kind}.jpg", host=HOST) for kind in ("og", "ld", "1280")
        }


def test_product_id_falls_back_to_the_canonical_url(shop, fetcher):
    shop.server.serve(
        "/p/plain.html",
        b'<html><head><meta property="og:type" content="product">'
        b'<meta property="og:image" content="/img/p1-og.jpg">'
        b'<link rel="canonical" href="/p/plain"></head></html>',
        "text/html",
    )
    result = crawl(shop.url("/p/plain.html"), fetcher, max_depth=0)
    (record,) = result.records
    assert record.product_id == shop.url("/p/plain")
    assert record.title is None


def test_meta_robots_noindex_nofollow_honoured(shop, fetcher):
    html = product_html(1).replace(
        "<head>", '<head><meta name="robots" content="noindex,nofollow">'
    )
    shop.server.serve("/p/1.html", html.encode(), "text/html")
    result = crawl(shop.url("/p/1.html"), fetcher, max_depth=3)
    assert result.records == () and result.pages == (shop.url("/p/1.html"),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_url": "/relative"}, "the start URL must be an absolute http(s) URL"),
        ({"start_url": "ftp://shop.test/"}, "the start URL must be an absolute http(s) URL"),
        ({"max_depth": -1}, "max_depth must be 0 or more, not -1"),
        ({"max_pages": 0}, "max_pages must be 1 or more, not 0"),
        ({"sitemap": "mailto:x@y"}, "the sitemap must be an http(s) URL"),
    ],
)
def test_bad_arguments_refused(fetcher, kwargs, message):
    kwargs = {"start_url": "http://shop.test/"} | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        crawl(fetcher=fetcher, **kwargs)


def test_site_key_treats_www_and_the_bare_domain_as_one_site():
    assert site_key("http://www.shop.test/a") == site_key("http://shop.test/b") == (
        "http", "shop.test", 80,
    )  # fmt: skip
    assert site_key("https://shop.test/") != site_key("http://shop.test/")
    assert site_key("http://shop.test:8080/") != site_key("http://shop.test/")
    assert site_key("http://cdn.shop.test/") != site_key("http://shop.test/")


# -- re-crawling ----------------------------------------------------------------------------


def fingerprinted(fetcher: Fetcher, result: CrawlResult) -> CrawlResult:
    """``result`` with the sha256 of each of its images, fetched as an ingest worker would."""
    return result.with_fingerprints(
        {
            record.url: hashlib.sha256(fetcher.fetch(record.url).data).hexdigest()
            for record in result.records
            if record.url is not None
        }
    )


def test_recrawl_reports_new_changed_and_removed_images(shop, fetcher):
    before = fingerprinted(fetcher, crawl(shop.url("/"), fetcher))
    shop.build(2)
    after = fingerprinted(fetcher, crawl(shop.url("/"), fetcher))

    diff = diff_crawls(before, after)
    www = f"www.{HOST}"
    assert diff == CrawlDiff(
        new=tuple(sorted(shop.images_of(5))),
        changed=(shop.url("/img/p1-og.jpg"),),
        removed=tuple(sorted(shop.images_of(2))),
        unchanged=tuple(
            sorted(shop.images_of(1) - {shop.url("/img/p1-og.jpg")} | shop.images_of(3, www))
        ),
        unverified=(),
    )
    # The same answer from the states a catalog keeps instead of the whole result.
    stored = [ImageState(s.url, s.page_url, s.fingerprint) for s in before.images()]
    assert diff_crawls(stored, after) == diff


def test_etags_serve_as_fingerprints(shop, fetcher):
    result = crawl(shop.url("/p/1.html"), fetcher, max_depth=0)
    etags = {r.url: fetcher.fetch(r.url).etag for r in result.records}
    assert etags[shop.url("/img/p1-og.jpg")] == "p1-og"
    before = result.with_fingerprints(etags)
    after = result.with_fingerprints({shop.url("/img/p1-og.jpg"): "p1-og-v2"})
    assert diff_crawls(before, after).changed == (shop.url("/img/p1-og.jpg"),)


def test_a_page_that_failed_for_now_removes_nothing(shop, fetcher):
    before = fingerprinted(fetcher, crawl(shop.url("/"), fetcher))
    gone_from_the_site = ImageState(shop.url("/img/old.jpg"), shop.url("/p/old.html"), "x")
    shop.build(2)
    shop.server.route("/p/3.html", responder(503, b"busy", "text/plain"))
    after = fingerprinted(fetcher, crawl(shop.url("/"), fetcher))
    assert by_url(after)[shop.page_of(3)].permanent is False
    assert not after.complete

    diff = diff_crawls([*before.images(), gone_from_the_site], after)
    www = f"www.{HOST}"
    # Product 3's page did not answer: its images may still be there.
    assert set(diff.unverified) == shop.images_of(3, www) | {shop.url("/img/old.jpg")}
    # Product 2's page answered 404: gone for good, whatever else failed.
    assert set(diff.removed) == shop.images_of(2)
    assert set(diff.new) == shop.images_of(5)
    assert diff.changed == (shop.url("/img/p1-og.jpg"),)


def test_an_unlinked_page_is_removed_only_after_a_complete_crawl(shop, fetcher):
    before = fingerprinted(fetcher, crawl(shop.url("/"), fetcher))
    unlinked = ImageState(shop.url("/img/old.jpg"), shop.url("/p/old.html"), "x")
    unknown_page = ImageState(shop.url("/img/orphan.jpg"), None, "y")
    after = fingerprinted(fetcher, crawl(shop.url("/"), fetcher))
    assert after.complete
    diff = diff_crawls([*before.images(), unlinked, unknown_page], after)
    assert diff.removed == (shop.url("/img/old.jpg"), shop.url("/img/orphan.jpg"))
    assert diff.new == diff.changed == diff.unverified == ()

    cut_short = crawl(shop.url("/"), fetcher, max_pages=2)
    diff = diff_crawls([unlinked, unknown_page], cut_short)
    assert diff.removed == ()
    assert diff.unverified == (shop.url("/img/old.jpg"), shop.url("/img/orphan.jpg"))


def test_without_fingerprints_nothing_is_called_unchanged(shop, fetcher):
    before = crawl(shop.url("/"), fetcher)
    shop.build(2)
    after = crawl(shop.url("/"), fetcher)
    diff = diff_crawls(before, after)
    www = f"www.{HOST}"
    assert diff.changed == diff.unchanged == ()
    assert set(diff.unverified) == shop.images_of(1) | shop.images_of(3, www)
    assert set(diff.new) == shop.images_of(5)
    assert set(diff.removed) == shop.images_of(2)


def test_a_crawl_with_the_real_resolver_and_a_literal_address(settings):
    with LocalServer() as server:
        server.serve("/", page("Home", []), "text/html")
        server.serve("/robots.txt", b"", "text/plain", status=404)
        fetcher = Fetcher.from_settings(settings, rate_limiter=LocalRateLimiter(0))
        result = crawl(server.url("/"), fetcher)
        assert result.pages == (server.url("/"),) and result.complete

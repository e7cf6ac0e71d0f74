"""indexer.sources.sitemap: the locations a sitemap lists, and XML we refuse to read."""

from __future__ import annotations

import pytest

from indexer.sources.sitemap import Sitemap, SitemapError, parse_sitemap

URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc> https://shop.test/p/1.html </loc>
    <lastmod>2024-05-01</lastmod>
    <image:image><image:loc>https://cdn.test/p1.jpg</image:loc></image:image>
  </url>
  <url><loc>https://shop.test/p/2.html?colour=red&amp;size=9</loc></url>
  <url><loc></loc></url>
</urlset>
"""

INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://shop.test/sitemap-products.xml</loc><lastmod>2024-05-01</lastmod></sitemap>
  <sitemap><loc>https://shop.test/sitemap-more.xml.gz</loc></sitemap>
</sitemapindex>
"""


def test_urlset_lists_pages_and_ignores_the_image_extension():
    assert parse_sitemap(URLSET) == Sitemap(
        pages=("https://shop.test/p/1.html", "https://shop.test/p/2.html?colour=red&size=9")
    )


def test_sitemap_index_lists_sitemaps():
    assert parse_sitemap(INDEX) == Sitemap(
        sitemaps=("https://shop.test/sitemap-products.xml", "https://shop.test/sitemap-more.xml.gz")
    )


def test_without_a_namespace_and_in_another_encoding():
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        "<urlset><url><loc>https://shop.test/caf\xe9.html</loc></url></urlset>"
    ).encode("latin-1")
    assert parse_sitemap(data).pages == ("https://shop.test/caf\xe9.html",)


def test_loc_elsewhere_is_not_a_page():
    data = (
        b"<urlset><loc>https://shop.test/stray</loc><url><x><loc>/nested</loc></x></url></urlset>"
    )
    assert parse_sitemap(data) == Sitemap()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html><body>not found</body></html>", "not a sitemap: root element <html>"),
        (b'<rss version="2.0"><channel/></rss>', "not a sitemap: root element <rss>"),
        (b"<urlset><url><loc>x</url></urlset>", "invalid XML: mismatched tag"),
        (b"", "invalid XML: no element found"),
    ],
)
def test_other_documents_refused_with_a_reason(data, reason):
    with pytest.raises(SitemapError) as info:
        parse_sitemap(data)
    assert str(info.value).startswith(reason)


def test_entity_declarations_refused_no_billion_laughs():
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<urlset><url><loc>&lol3;</loc></url></urlset>"""
    with pytest.raises(SitemapError, match="entity declarations are not allowed"):
        parse_sitemap(bomb)


def test_external_entities_refused():
    xxe = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<urlset><url><loc>&secret;</loc></url></urlset>"""
    with pytest.raises(SitemapError, match="entity declarations are not allowed"):
        parse_sitemap(xxe)

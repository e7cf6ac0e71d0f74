"""indexer.sources.pages: links and product images from one HTML page, no network."""

from __future__ import annotations

import json

import pytest

from indexer.sources.pages import (
    PageImage,
    decode_html,
    largest_candidate,
    normalize_url,
    parse_page,
)

PAGE_URL = "http://shop.test/p/red-shoe.html"


def product_page(body: str = "", head: str = "", product: dict | None = None) -> str:
    ld = ""
    if product is not None:
        ld = f'<script type="application/ld+json">{json.dumps(product)}</script>'
    return (
        f"<!DOCTYPE html><html><head><title>Red shoe | Shop</title>{head}{ld}</head>"
        f"<body>{body}</body></html>"
    )


def image_urls(html: str, url: str = PAGE_URL) -> list[str]:
    return [image.url for image in parse_page(html.encode(), url).images]


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("b.html", "http://shop.test/a/b.html"),
        ("../c.html?x=1#top", "http://shop.test/c.html?x=1"),
        ("//cdn.test/i.jpg", "http://cdn.test/i.jpg"),
        ("  /p/1.html\n", "http://shop.test/p/1.html"),
        ("/p/\t1.html", "http://shop.test/p/1.html"),
        ("HTTP://Shop.TEST:80/Q", "http://shop.test/Q"),
        ("https://shop.test:443", "https://shop.test/"),
        ("http://shop.test:8080/", "http://shop.test:8080/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("#reviews", "http://shop.test/a/index.html"),
        ("mailto:shop@shop.test", None),
        ("javascript:void(0)", None),
        ("tel:+441234", None),
        ("data:image/png;base64,AAAA", None),
        ("ftp://shop.test/file", None),
        ("http://user:pw@shop.test/", None),
        ("http://shop.test:99999/", None),
        ("", None),
    ],
)
def test_normalize_url(href, expected):
    assert normalize_url(href, "http://shop.test/a/index.html") == expected


@pytest.mark.parametrize(
    ("srcset", "expected"),
    [
        ("s.jpg 320w, m.jpg 640w, l.jpg 1280w", "l.jpg"),
        ("l.jpg 1280w, s.jpg 320w", "l.jpg"),
        ("a.jpg, b.jpg 2x", "b.jpg"),
        ("a.jpg 3x, b.jpg 2x", "a.jpg"),
        ("a.jpg 2x, b.jpg 100w", "b.jpg"),
        ("/img/a,b.jpg 1x, /img/c,d.jpg 2x", "/img/c,d.jpg"),
        ("only.jpg", "only.jpg"),
        ("bad.jpg zzw, good.jpg 10w", "good.jpg"),
        ("", None),
        (" , ", None),
    ],
)
def test_largest_srcset_candidate(srcset, expected):
    assert largest_candidate(srcset) == expected


def test_links_are_absolute_normalised_unique_and_only_http():
    html = product_page(
        '<a href="/c/shoes.html">shoes</a><a href="/c/shoes.html#top">again</a>'
        '<a href="mailto:x@shop.test">mail</a><a href="javascript:go()">js</a>'
        '<a href="tel:123">call</a><a href="other.html">rel</a><a>no href</a>'
        '<map><area href="/c/bags.html"></map>'
    )
    page = parse_page(html.encode(), PAGE_URL)
    assert page.links == (
        "http://shop.test/c/shoes.html",
        "http://shop.test/p/other.html",
        "http://shop.test/c/bags.html",
    )


def test_base_href_applies_to_links_and_images():
    html = product_page(
        '<a href="p/2.html">2</a><img src="img/a.jpg">',
        head='<base href="http://shop.test/en/"><meta property="og:type" content="product">',
    )
    page = parse_page(html.encode(), PAGE_URL)
    assert page.base_url == "http://shop.test/en/"
    assert page.links == ("http://shop.test/en/p/2.html",)
    assert image_urls(html) == ["http://shop.test/en/img/a.jpg"]


# -- product images -----------------------------------------------------------------------


def test_product_images_from_every_source_in_order():
    html = product_page(
        head=(
            '<meta property="og:image" content="/img/og.jpg">'
            '<meta property="og:image:secure_url" content="https://shop.test/img/og-s.jpg">'
            '<link rel="image_src" href="/img/src.jpg">'
        ),
        product={
            "@context": "https://schema.org",
            "@type": "Product",
            "sku": "RS-1",
            "image": ["/img/ld1.jpg", {"@type": "ImageObject", "url": "/img/ld2.jpg"}],
        },
        body=(
            '<img srcset="/img/320.jpg 320w, /img/1280.jpg 1280w" src="/img/320.jpg">'
            '<img src="/img/og.jpg">'  # the same image again: once is enough
            '<img src="data:image/gif;base64,R0lGOD" data-src="/img/lazy.jpg">'
        ),
    )
    page = parse_page(html.encode(), PAGE_URL)
    assert page.is_product
    assert list(page.images) == [
        PageImage("http://shop.test/img/og.jpg", "og:image"),
        PageImage("https://shop.test/img/og-s.jpg", "og:image"),
        PageImage("http://shop.test/img/ld1.jpg", "json-ld"),
        PageImage("http://shop.test/img/ld2.jpg", "json-ld"),
        PageImage("http://shop.test/img/src.jpg", "image_src"),
        PageImage("http://shop.test/img/1280.jpg", "img"),
        PageImage("http://shop.test/img/lazy.jpg", "img"),
    ]


@pytest.mark.parametrize(
    "img",
    [
        '<img src="data:image/png;base64,iVBORw0KGgo=">',
        '<img src="/img/shoe.svg">',
        '<img src="/favicon.ico">',
        '<img src="/t/p.gif?u=1" width="1" height="1">',
        '<img src="/t/p.gif" width="0">',
        '<img src="/t/p.gif" height="1px">',
        '<img src="/img/logo.png">',
        '<img src="/img/shop-logo@2x.png">',
        '<img src="/img/Logos/main.png" class="brand-logo">',
        '<img src="/img/cart-icon.png">',
        '<img src="/img/icons.png">',
        '<img src="/img/sprite.png">',
        '<img src="/img/spacer.gif">',
        '<img src="/img/a.png" class="social-icon">',
        '<img src="/img/a.png" id="logo">',
        '<header><img src="/img/banner.jpg"></header>',
        '<nav><ul><li><img src="/img/menu.jpg"></li></ul></nav>',
        '<footer><img src="/img/payment.jpg"></footer>',
    ],
)
def test_obvious_non_product_images_skipped(img):
    html = product_page(img + '<img src="/img/shoe.jpg">', head=OG_PRODUCT)
    assert image_urls(html) == ["http://shop.test/img/shoe.jpg"]


OG_PRODUCT = '<meta property="og:type" content="product">'


@pytest.mark.parametrize(
    "name", ["iconic-dress.jpg", "pixel-8-phone.jpg", "blank-tshirt.jpg", "logomania.jpg"]
)
def test_product_names_that_merely_contain_a_junk_word_kept(name):
    html = product_page(f'<img src="/img/{name}">', head=OG_PRODUCT)
    assert image_urls(html) == [f"http://shop.test/img/{name}"]


def test_images_after_a_closed_header_are_kept():
    html = product_page(
        '<header><img src="/img/banner.jpg"><nav/></header><main><img src="/img/shoe.jpg"></main>',
        head=OG_PRODUCT,
    )
    assert image_urls(html) == ["http://shop.test/img/shoe.jpg"]


# -- JSON-LD --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {"@type": "Product", "sku": "A1", "image": "/i.jpg"},
        {"@type": ["Product", "Thing"], "sku": "A1", "image": ["/i.jpg"]},
        {"@type": "http://schema.org/Product", "sku": "A1", "image": {"contentUrl": "/i.jpg"}},
        [{"@type": "BreadcrumbList"}, {"@type": "Product", "sku": "A1", "image": "/i.jpg"}],
        {"@graph": [{"@type": "WebPage"}, {"@type": "Product", "sku": "A1", "image": "/i.jpg"}]},
        {"@type": "ItemPage", "mainEntity": {"@type": "Product", "sku": "A1", "image": "/i.jpg"}},
        {
            "@type": "ProductGroup",
            "productGroupID": "A1",
            "hasVariant": [{"@type": "Product", "image": "/i.jpg"}],
        },
    ],
)
def test_json_ld_products_in_their_usual_shapes(document):
    page = parse_page(product_page(product=document).encode(), PAGE_URL)
    assert page.is_product
    assert page.product_id == "A1"
    assert [image.url for image in page.images] == ["http://shop.test/i.jpg"]


def test_products_listed_on_a_category_page_do_not_make_it_a_product_page():
    listing = {
        "@type": "ItemList",
        "itemListElement": [
            {"@type": "ListItem", "item": {"@type": "Product", "sku": "A1", "image": "/a.jpg"}},
            {"@type": "ListItem", "item": {"@type": "Product", "sku": "B2", "image": "/b.jpg"}},
        ],
    }
    page = parse_page(product_page(product=listing).encode(), "http://shop.test/c/shoes.html")
    assert not page.is_product
    assert page.product_id is None


def test_broken_json_ld_is_ignored_not_fatal():
    html = (
        '<html><head><script type="application/ld+json">{"@type": "Product", </script>'
        '<script type="application/ld+json">' + "[" * 100_000 + "</script>"
        f"{OG_PRODUCT}</head><body><img src='/img/a.jpg'></body></html>"
    )
    page = parse_page(html.encode(), PAGE_URL)
    assert page.is_product and image_urls(html) == ["http://shop.test/img/a.jpg"]


# -- title, id, product-ness, robots ----------------------------------------------------------


def test_title_prefers_og_title_then_product_name_then_title():
    og = product_page(head='<meta property="og:title" content=" Red  shoe ">')
    assert parse_page(og.encode(), PAGE_URL).title == "Red shoe"
    ld = product_page(product={"@type": "Product", "name": "Red shoe (LD)"})
    assert parse_page(ld.encode(), PAGE_URL).title == "Red shoe (LD)"
    plain = "<html><head><title>Red &amp; blue\n shoe</title></head></html>"
    assert parse_page(plain.encode(), PAGE_URL).title == "Red & blue shoe"
    assert parse_page(b"<p>no title</p>", PAGE_URL).title is None


@pytest.mark.parametrize(
    ("head", "product_id"),
    [
        ('<meta property="product:retailer_item_id" content="FB-7">', "FB-7"),
        ('<meta itemtype="http://schema.org/Product" itemprop="sku" content="MD-3">', "MD-3"),
        (OG_PRODUCT, None),
    ],
)
def test_product_id_from_meta_tags(head, product_id):
    page = parse_page(product_page(head=head).encode(), PAGE_URL)
    assert page.is_product and page.product_id == product_id


def test_numeric_sku_becomes_a_string_and_canonical_is_resolved():
    html = product_page(
        head='<link rel="canonical" href="/p/1#x">', product={"@type": "Product", "sku": 1234}
    )
    page = parse_page(html.encode(), PAGE_URL)
    assert page.product_id == "1234"
    assert page.canonical == "http://shop.test/p/1"


def test_a_page_without_product_markup_is_not_a_product_page():
    page = parse_page(b"<html><body><img src='/hero.jpg'><a href='/p/1'>1</a></body>", PAGE_URL)
    assert not page.is_product


def test_microdata_product_is_a_product_page():
    html = '<div itemscope itemtype="https://schema.org/Product"><img src="/a.jpg"></div>'
    assert parse_page(html.encode(), PAGE_URL).is_product


@pytest.mark.parametrize(
    ("content", "follow", "index"),
    [
        ("noindex, nofollow", False, False),
        ("NOFOLLOW", False, True),
        ("noindex", True, False),
        ("none", False, False),
        ("all", True, True),
    ],
)
def test_meta_robots(content, follow, index):
    html = product_page(head=f'<meta name="robots" content="{content}">')
    page = parse_page(html.encode(), PAGE_URL)
    assert (page.follow, page.index) == (follow, index)


# -- bytes to text ----------------------------------------------------------------------------


def test_decode_html_charsets():
    text = "<title>Café</title>"
    assert decode_html(text.encode("latin-1"), "text/html; charset=ISO-8859-1") == text
    meta = '<meta charset="windows-1252"><title>Café</title>'
    assert decode_html(meta.encode("cp1252"), "text/html") == meta
    assert decode_html(b"\xef\xbb\xbf" + text.encode(), "text/html; charset=latin-1") == text
    assert decode_html(text.encode("utf-16"), None) == text
    assert decode_html(text.encode(), "text/html; charset=bogus") == text
    assert "\ufffd" in decode_html(b"<p>\xff</p>", None)  # never raises


@pytest.mark.parametrize(
    "junk", ["<![if !supportLists]>", "<![foo bar>", "<![ x", "<!", '<![=/"!c>', "</", "<a href='"]
)
def test_markup_the_standard_parser_chokes_on_is_skipped(junk):
    html = f"{OG_PRODUCT}<img src='/img/a.jpg'>{junk}<p>after</p>"
    assert image_urls(html) == ["http://shop.test/img/a.jpg"]
    html = f"{OG_PRODUCT}{junk}> <img src='/img/b.jpg'>"
    parse_page(html.encode(), PAGE_URL)  # whatever it makes of it, it does not raise

"""Read one HTML page: the links it has and, on a product page, the product's images.

:func:`parse_page` uses the standard library's forgiving :mod:`html.parser` (real
shop pages are rarely valid HTML) and never fetches anything. Every URL it returns
is absolute, resolved against the page's base URL (``<base href>`` if there is
one) and normalised by :func:`normalize_url`, so URLs can be compared as strings.

Images come, in this order, from:

1. ``og:image`` / ``og:image:url`` / ``og:image:secure_url`` meta tags;
2. the ``image`` of schema.org ``Product`` objects in JSON-LD scripts;
3. ``<link rel="image_src">``;
4. ``<img>`` elements: the largest ``srcset`` candidate, else ``src`` (and their
   lazy-loading ``data-`` twins), except inside ``<header>``, ``<nav>``,
   ``<footer>`` and ``<aside>``: site chrome, not the product.

Obvious non-product images are skipped: ``data:`` URIs, SVG and ICO files, ``<img>``
with a declared width or height of 2 pixels or less (tracking pixels), and files,
classes or ids named like a logo, icon, sprite, spacer or the like.

A page counts as a product page when it has a JSON-LD ``Product``, an ``og:type``
of ``product``, ``product:`` meta tags or a schema.org ``Product`` itemtype
(:func:`is_product_page`).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from posixpath import splitext
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
PRODUCT_TYPES = frozenset({"product", "productgroup", "individualproduct", "productmodel"})
#: og:type values of a product page (Facebook's and older spellings).
PRODUCT_OG_TYPES = frozenset({"product", "og:product", "product.item", "product.group"})
#: Containers of site chrome, whose images are not the product's.
CHROME_TAGS = frozenset({"header", "nav", "footer", "aside"})
SKIPPED_IMAGE_EXTENSIONS = frozenset({".svg", ".svgz", ".ico", ".cur"})

# Names of images that are never the product: whole words, plural allowed.
# Not "pixel" or "blank": a Pixel phone and a blank T-shirt are products.
_JUNK_NAME = re.compile(
    r"(?<![a-z])(logo|icon|sprite|favicon|spacer|tracking|tracker|beacon"
    r"|placeholder|spinner|loader|loading|badge|avatar)s?(?![a-z])"
)
_ASCII_SPACE = " \t\n\r\f"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_MAX_JSON_DEPTH = 32


@dataclass(frozen=True, slots=True)
class PageImage:
    """An image found on a page, and where on the page it was found."""

    url: str
    source: str  # "og:image", "json-ld", "image_src" or "img"


@dataclass(frozen=True, slots=True)
class Page:
    """What one HTML page says, as far as a crawl cares."""

    url: str  # where the page was read (after redirects)
    base_url: str  # what its relative URLs are resolved against
    title: str | None  # og:title, else the JSON-LD product's name, else <title>
    canonical: str | None  # <link rel="canonical">
    product_id: str | None  # a SKU or product id from the markup, if any
    is_product: bool  # see is_product_page
    links: tuple[str, ...]  # <a>/<area> targets, in page order, once each
    images: tuple[PageImage, ...]  # the product's images (see the module docstring)
    follow: bool = True  # False when <meta name="robots"> says nofollow
    index: bool = True  # False when it says noindex


def normalize_url(href: str, base: str | None = None) -> str | None:
    """``href`` resolved against ``base`` as a comparable absolute http(s) URL, or None.

    Drops the fragment and a default port, lower-cases scheme and host, and writes
    an empty path as ``/``. None for other schemes (``mailto:``, ``javascript:``,
    ``tel:``, ``data:``), URLs with credentials and anything unparsable.
    """
    # Browsers drop surrounding spaces and any tab or line break inside a URL.
    href = re.sub(r"[\t\n\r]", "", href.strip(_ASCII_SPACE))
    if not href:
        return None
    try:
        parts = urlsplit(urljoin(base, href) if base else href)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if scheme not in SCHEMES or not host:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def largest_candidate(srcset: str) -> str | None:
    """The URL of the widest (or densest) candidate of a ``srcset`` attribute."""
    best: tuple[float, str] | None = None
    for url, descriptor in _srcset_candidates(srcset):
        # Widths and densities are not comparable: any width beats any density.
        size = 1e-6  # no descriptor: 1x
        if descriptor[-1:] in ("w", "x"):
            try:
                size = float(descriptor[:-1]) * (1.0 if descriptor[-1] == "w" else 1e-6)
            except ValueError:
                continue
        if best is None or size > best[0]:
            best = (size, url)
    return best[1] if best else None


def _srcset_candidates(srcset: str) -> Iterator[tuple[str, str]]:
    """(url, descriptor) pairs, split as the HTML standard does (URLs may hold commas)."""
    i, n = 0, len(srcset)
    while i < n:
        while i < n and (srcset[i] in _ASCII_SPACE or srcset[i] == ","):
            i += 1
        start = i
        while i < n and srcset[i] not in _ASCII_SPACE:
            i += 1
        url = srcset[start:i]
        if not url:
            return
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start = i
            depth = 0
            while i < n and (srcset[i] != "," or depth):
                depth += {"(": 1, ")": -1}.get(srcset[i], 0)
                i += 1
            descriptor = srcset[start:i].strip(_ASCII_SPACE).lower()
        if url:
            yield url, descriptor


def decode_html(data: bytes, content_type: str | None = None) -> str:
    """Text of an HTML page: BOM, then the Content-Type charset, then <meta charset>, else UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    candidates = []
    match = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type or "", re.I)
    if match:
        candidates.append(match.group(1))
    if meta := _META_CHARSET.search(data[:4096]):
        candidates.append(meta.group(1).decode("ascii"))
    for name in candidates:
        try:
            codec = codecs.lookup(name)
        except LookupError:
            continue
        if codec.name.startswith("utf-16"):  # a page that says so but is ASCII-compatible
            codec = codecs.lookup("utf-8")
        return data.decode(codec.name, errors="replace")
    return data.decode("utf-8", errors="replace")


def is_product_page(page: Page) -> bool:
    """Does ``page`` show one product (and not a listing, a blog post, the home page)?"""
    return page.is_product


def parse_page(data: bytes | str, url: str, content_type: str | None = None) -> Page:
    """Read the HTML page ``data`` that was served at ``url`` (an absolute http(s) URL)."""
    text = data if isinstance(data, str) else decode_html(data, content_type)
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    return parser.page(url)


def _is_junk_name(url: str) -> bool:
    path = unquote(urlsplit(url).path).lower()
    name = path.rsplit("/", 1)[-1]
    return splitext(name)[1] in SKIPPED_IMAGE_EXTENSIONS or bool(_JUNK_NAME.search(name))


def _tiny(value: str | None) -> bool:
    """A declared width or height of a tracking pixel (``1``, ``0``, ``1px``)."""
    match = re.fullmatch(r"\s*(\d+)(\.\d*)?\s*(px)?\s*", value or "")
    return match is not None and int(match.group(1)) <= 2


def _type_names(value: object) -> set[str]:
    """``"Product"``, ``"schema:Product"``, ``["https://schema.org/Product"]`` -> {"product"}."""
    values = value if isinstance(value, list) else [value]
    return {re.split(r"[/:#]", v)[-1].lower() for v in values if isinstance(v, str)}


def _json_ld_products(document: object) -> Iterator[dict]:
    """Product objects at the top of a JSON-LD document, in its @graph or as a mainEntity.

    Products inside an ItemList (a category page's listing) are not this page's product.
    """
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop(0)
        if depth > _MAX_JSON_DEPTH:
            continue
        if isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, dict):
            if _type_names(node.get("@type")) & PRODUCT_TYPES:
                yield node
                stack.extend((variant, depth + 1) for variant in _as_list(node.get("hasVariant")))
            for key in ("@graph", "mainEntity"):
                if key in node:
                    stack.append((node[key], depth + 1))


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _json_ld_images(product: dict) -> Iterator[str]:
    for image in _as_list(product.get("image")):
        if isinstance(image, str):
            yield image
        elif isinstance(image, dict):  # an ImageObject
            for key in ("contentUrl", "url"):
                if isinstance(image.get(key), str):
                    yield image[key]
                    break


def _scalar(value: object) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    return None


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text or None


class _PageParser(HTMLParser):
    """Collects the raw bits of a page; :meth:`page` resolves and filters them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base_href: str | None = None
        self.meta: dict[str, list[str]] = {}
        self.title_parts: list[str] = []
        self.in_title = False
        self.seen_title = False
        self.canonical: str | None = None
        self.image_src: list[str] = []
        self.links: list[str] = []
        self.imgs: list[dict[str, str]] = []
        self.json_ld: list[str] = []
        self.script: list[str] | None = None
        self.chrome_depth = 0
        self.product_itemtype = False
        self.itemprop_ids: list[str] = []

    # -- the parser's callbacks ------------------------------------------------

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:  # "<![foo": the stdlib gives up; skip it as a browser would
            end = self.rawdata.find(">", i + 3)
            return -1 if end < 0 else end + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag in CHROME_TAGS:
            self.chrome_depth += 1
        if _type_names(a.get("itemtype", "").split()) & PRODUCT_TYPES:
            self.product_itemtype = True
        if a.get("itemprop", "").lower() in ("sku", "productid") and a.get("content"):
            self.itemprop_ids.append(a["content"])
        if tag == "base" and self.base_href is None and a.get("href"):
            self.base_href = a["href"]
        elif tag == "meta":
            key = (a.get("property") or a.get("name") or "").strip().lower()
            if key and "content" in a:
                self.meta.setdefault(key, []).append(a["content"])
        elif tag == "link":
            rels = a.get("rel", "").lower().split()
            if "canonical" in rels and self.canonical is None and a.get("href"):
                self.canonical = a["href"]
            if "image_src" in rels and a.get("href"):
                self.image_src.append(a["href"])
        elif tag in ("a", "area") and a.get("href"):
            self.links.append(a["href"])
        elif tag == "img":
            self.imgs.append(a | {"__chrome": "1" if self.chrome_depth else ""})
        elif tag == "title" and not self.seen_title:
            self.in_title = True
        elif tag == "script" and a.get("type", "").strip().lower() == "application/ld+json":
            self.script = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in CHROME_TAGS:  # <nav/> opens nothing
            self.chrome_depth -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in CHROME_TAGS and self.chrome_depth:
            self.chrome_depth -= 1
        elif tag == "title" and self.in_title:
            self.in_title = False
            self.seen_title = True
        elif tag == "script" and self.script is not None:
            self.json_ld.append("".join(self.script))
            self.script = None

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)
        elif self.script is not None:
            self.script.append(data)

    # -- the page --------------------------------------------------------------

    def page(self, url: str) -> Page:
        page_url = normalize_url(url) or url
        base = normalize_url(self.base_href, page_url) if self.base_href else None
        base = base or page_url

        products = list(self._products())
        og_type = (self._first("og:type") or "").lower()
        robots = {t.strip() for c in self.meta.get("robots", []) for t in c.lower().split(",")}
        title = _clean(self._first("og:title"))
        if title is None and products:
            title = _clean(_scalar(products[0].get("name")))
        if title is None and self.title_parts:
            title = _clean("".join(self.title_parts))
        canonical = normalize_url(self.canonical, base) if self.canonical else None
        return Page(
            url=page_url,
            base_url=base,
            title=title,
            canonical=canonical,
            product_id=self._product_id(products),
            is_product=bool(
                products
                or og_type in PRODUCT_OG_TYPES
                or self.product_itemtype
                or any(key.startswith("product:") for key in self.meta)
            ),
            links=tuple(_unique(normalize_url(href, base) for href in self.links)),
            images=tuple(self._images(base, products)),
            follow=not robots & {"nofollow", "none"},
            index=not robots & {"noindex", "none"},
        )

    def _first(self, key: str) -> str | None:
        values = self.meta.get(key)
        return values[0] if values else None

    def _products(self) -> Iterator[dict]:
        for text in self.json_ld:
            try:
                document = json.loads(text)
            except (ValueError, RecursionError):
                continue  # a broken script must not cost us the rest of the page
            yield from _json_ld_products(document)

    def _product_id(self, products: list[dict]) -> str | None:
        for product in products:
            for key in ("sku", "productID", "productGroupID", "mpn"):
                if (value := _scalar(product.get(key))) is not None:
                    return value
        for key in ("product:retailer_item_id", "product:sku", "og:product_id"):
            if (value := _clean(self._first(key))) is not None:
                return value
        return next(filter(None, map(_clean, self.itemprop_ids)), None)

    def _images(self, base: str, products: list[dict]) -> Iterator[PageImage]:
        found: list[tuple[str, str]] = []
        for key in ("og:image", "og:image:url", "og:image:secure_url"):
            found += [(href, "og:image") for href in self.meta.get(key, [])]
        for product in products:
            found += [(href, "json-ld") for href in _json_ld_images(product)]
        found += [(href, "image_src") for href in self.image_src]
        for img in self.imgs:
            if img["__chrome"] or _tiny(img.get("width")) or _tiny(img.get("height")):
                continue
            names = f"{img.get('class', '')} {img.get('id', '')}".lower()
            if _JUNK_NAME.search(names):
                continue
            srcset = img.get("srcset") or img.get("data-srcset") or ""
            href = largest_candidate(srcset) or img.get("data-src") or img.get("src")
            if href:
                found.append((href, "img"))
        seen: set[str] = set()
        for href, source in found:
            url = normalize_url(href, base)
            if url is None or url in seen or _is_junk_name(url):
                continue
            seen.add(url)
            yield PageImage(url, source)


def _unique(urls: Iterable[str | None]) -> Iterator[str]:
    seen: set[str] = set()
    for url in urls:
        if url is not None and url not in seen:
            seen.add(url)
            yield url

"""Read an XML sitemap (https://www.sitemaps.org/protocol.html): the pages or sitemaps it lists.

A sitemap is either a ``<urlset>`` of ``<url><loc>`` pages or a ``<sitemapindex>``
of ``<sitemap><loc>`` further sitemaps. Other elements (``lastmod``, the image and
news extensions) are ignored, and so are ``<loc>`` elements anywhere else.

The XML comes from an untrusted site, so it is read with expat directly and any
entity declaration is refused outright: no "billion laughs", no external
entities. Locations are returned as written (trimmed); resolving and
checking them is the caller's job. The fetcher has already bounded the size.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.parsers import expat

_ROOTS = {"urlset": "url", "sitemapindex": "sitemap"}  # root -> the element holding <loc>


class SitemapError(ValueError):
    """A document that is not a sitemap we can read; the message says why."""


@dataclass(frozen=True, slots=True)
class Sitemap:
    """The locations a sitemap lists: pages (a urlset) or sitemaps (a sitemap index)."""

    pages: tuple[str, ...] = ()
    sitemaps: tuple[str, ...] = ()


def parse_sitemap(data: bytes) -> Sitemap:
    """The locations listed in the sitemap ``data``, or :class:`SitemapError`."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    path: list[str] = []
    locs: list[str] = []
    text: list[str] | None = None
    root: list[str] = []

    def local(name: str) -> str:
        return name.rsplit(" ", 1)[-1]  # "{namespace} name" with namespace_separator=" "

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal text
        tag = local(name)
        if not path:
            if tag not in _ROOTS:
                raise SitemapError(f"not a sitemap: root element <{tag}>")
            root.append(tag)
        path.append(tag)
        if tag == "loc" and len(path) == 3 and path[1] == _ROOTS[root[0]]:
            text = []

    def end(name: str) -> None:
        nonlocal text
        if text is not None and local(name) == "loc":
            if loc := "".join(text).strip():
                locs.append(loc)
            text = None
        path.pop()

    def data_(chunk: str) -> None:
        if text is not None:
            text.append(chunk)

    def refuse_entities(*args: object) -> None:
        raise SitemapError("entity declarations are not allowed in a sitemap")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data_
    parser.EntityDeclHandler = refuse_entities
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise SitemapError(f"invalid XML: {exc}") from None
    if not root:
        raise SitemapError("not a sitemap: no root element")
    if root[0] == "sitemapindex":
        return Sitemap(sitemaps=tuple(locs))
    return Sitemap(pages=tuple(locs))

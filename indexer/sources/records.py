"""What a source yields: one image to take in, from a local file or a URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One image a source offers, with the product metadata that came with it.

    Exactly one of ``path`` (a local file) and ``url`` (to be fetched) is the place
    to read the bytes from. ``source_url`` says where the image came from, as a
    URL (``file://…`` for local files): it is what the catalog shows next to a
    failure. ``page_url`` is the product page, when the source knows it.
    """

    path: Path | None
    url: str | None
    product_id: str | None = None
    label: str | None = None
    title: str | None = None
    source_url: str | None = None
    page_url: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("a SourceRecord needs exactly one of path and url")

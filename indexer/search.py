"""What a search asks and what it answers: the query kinds, the filters, the hit shape.

:meth:`indexer.engine.Lookalike.search` is the one search; the CLI, the HTTP API and
a shop's own code call it and get a :class:`SearchResult` of :class:`SearchHit`.
A query is one of:

* image bytes, a path (``str`` or :class:`~pathlib.Path`) or a PIL image: decoded
  with the intake's limits and embedded with the current model;
* :class:`ItemQuery` (or a catalog :class:`~indexer.catalog.Item`): the item's stored
  vector, no decoding and no forward pass. A plain ``str`` is always a path, never
  an item id, so a file named like an id cannot be mistaken for one;
* a numpy vector of the index's dimension (``[dim]`` or ``[1, dim]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np

from indexer.catalog import Item

FILTER_OVERFETCH = 10  # grouping by product: look this many times deeper, then group


class UnknownItem(KeyError):
    """An item query names no catalogued item."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ItemNotEmbedded(LookupError):
    """An item query names an item that has no vector for the current model yet."""


@dataclass(frozen=True)
class ItemQuery:
    """Search with a catalogued item's stored vector: ``engine.search(ItemQuery(item_id))``."""

    item_id: str


@dataclass(frozen=True)
class SearchHit:
    item: Item
    score: float

    def as_dict(self, home: Path | None = None) -> dict:
        """The fields every front end shows; with ``home``, the stored original's ``path`` too."""
        hit = {
            "item_id": self.item.id,
            "score": round(float(self.score), 6),
            "label": self.item.label,
            "product_id": self.item.product_id,
            "title": self.item.title,
        }
        if home is not None:
            hit["path"] = str(home / self.item.stored_path) if self.item.stored_path else None
        return hit


@dataclass(frozen=True)
class SearchResult:
    """Hits best first, and the index and model versions that produced every one of them.

    ``complete`` is False when fewer than ``k`` hits were found: the index (or the
    filter's items) holds fewer vectors, ``min_score`` cut the list, or grouping by
    product left fewer within the over-fetched depth.
    """

    hits: list[SearchHit]
    k: int
    index_version: str
    model_version: str
    depth: int  # how many neighbours the index was asked for
    box: tuple[int, int, int, int] | None = None  # the pixels cropped for a region query

    @property
    def complete(self) -> bool:
        return len(self.hits) >= self.k

    def __iter__(self):
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, position):
        return self.hits[position]


@dataclass(frozen=True)
class Filters:
    """Which neighbours a search keeps; all None/False keeps every one.

    ``label`` and ``product_id`` are exact: the search itself is restricted to the
    matching items' vector ids (:meth:`restricts`), so a label held by one item in a
    million still finds it. ``select`` checks them again on the hits' catalogue rows.
    """

    label: str | None = None
    product_id: str | None = None
    min_score: float | None = None
    group_by_product: bool = False

    def __post_init__(self) -> None:
        score = self.min_score
        if score is not None and (
            isinstance(score, bool) or not isinstance(score, Real) or not -1 <= score <= 1
        ):  # scores are inner products of unit vectors; NaN fails the range too
            raise ValueError(f"min_score must be a number from -1 to 1, got {score!r}")

    @property
    def active(self) -> bool:
        return (self.label is not None or self.product_id is not None
                or self.min_score is not None or self.group_by_product)  # fmt: skip

    @property
    def restricts(self) -> bool:
        """Whether the search is restricted to the catalogue's ids for label/product."""
        return self.label is not None or self.product_id is not None

    def depth(self, k: int, total: int, max_depth: int) -> int:
        """How deep to search ``total`` candidate vectors: deeper when grouping by
        product may fold several neighbours into one hit."""
        return min(max_depth, total, k * FILTER_OVERFETCH if self.group_by_product else k)

    def select(
        self, scores: np.ndarray, ids: np.ndarray, items: dict[int, Item], k: int
    ) -> list[SearchHit]:
        """The first ``k`` neighbours (best first) that pass; ids without an item are skipped."""
        hits: list[SearchHit] = []
        seen_products: set[str] = set()
        for score, vector_id in zip(scores, ids, strict=True):
            item = items.get(int(vector_id)) if vector_id >= 0 else None
            if item is None:
                continue
            if self.min_score is not None and score < self.min_score:
                break  # best first: nothing further can pass
            if self.label is not None and item.label != self.label:
                continue
            if self.product_id is not None and item.product_id != self.product_id:
                continue
            if self.group_by_product:
                key = item.product_id or item.id
                if key in seen_products:
                    continue
                seen_products.add(key)
            hits.append(SearchHit(item, float(score)))
            if len(hits) == k:
                break
        return hits


def check_k(k: object, max_k: int) -> int:
    """``k`` as an int from 1 to ``max_k`` (``LOOKALIKE_API_SEARCH_MAX_K``), else ValueError."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= max_k:
        raise ValueError(
            f"k must be an integer from 1 to {max_k} (LOOKALIKE_API_SEARCH_MAX_K), got {k!r}"
        )
    return int(k)


__all__ = [
    "FILTER_OVERFETCH", "Filters", "ItemNotEmbedded", "ItemQuery", "SearchHit",
    "SearchResult", "UnknownItem", "check_k",
]  # fmt: skip

"""The public Python API: open a catalogue, ingest, embed, build the index, search.

The CLI is a thin layer over this module, and so will the workers and the HTTP
API be. A shop's own code can use it directly::

    from indexer import Lookalike

    with Lookalike.open(home="shop-data") as engine:
        engine.ingest("photos/")          # folder, manifest or site: stored, embedded, indexed
        engine.embed()                    # vectors for anything stored earlier
        engine.build_index(shards=4)      # new index version, switched in atomically
        for hit in engine.search("query.jpg", k=5, group_by_product=True):
            print(hit.score, hit.item.product_id, hit.item.label)

:meth:`Lookalike.search` is the only search (query kinds: :mod:`indexer.search`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.catalog import Catalog, Item, ItemStatus, vector_id_for
from indexer.config import Settings, load_settings
from indexer.explain import (
    DECOMPOSITION,
    Explainer,
    Explanation,
    UnknownResultItem,
    check_method,
)
from indexer.images import ImageRejected, load_image, to_rgb
from indexer.index.errors import IndexLoadError
from indexer.index.searcher import MAX_K, ShardedSearcher
from indexer.index.store import IndexStore
from indexer.jobs import JobProgress, apply_deletions, run_inline, submit_source
from indexer.model.embed import Embedder
from indexer.model.modeldir import EmbeddingModel, current_model_spec, load_model
from indexer.regions import Box, PixelBox, crop
from indexer.search import (
    Filters,
    ItemNotEmbedded,
    ItemQuery,
    SearchHit,
    SearchResult,
    UnknownItem,
    check_k,
)
from indexer.vectors import VectorLookup, VectorStore

Query = bytes | str | Path | Image.Image | np.ndarray | ItemQuery | Item

log = logging.getLogger(__name__)

EMBED_CHUNK = 512  # items per committed chunk: an interrupted run redoes at most this many


class NoIndexError(RuntimeError):
    """Searching before any index version exists."""


@dataclass(frozen=True)
class EmbedReport:
    model_version: str
    embedded: int
    failed: list[tuple[str, str]]  # (item id, reason)


class Lookalike:
    """One data directory: its catalog, stored images, vectors and index versions."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog.open(settings.catalog_url)
        self.indexes = IndexStore.from_settings(settings)
        self._searcher: tuple[str, ShardedSearcher] | None = None
        self._searcher_swap = threading.Lock()  # one thread loads a new version
        # (vector-store parts, sorted ids, their vectors): see item_vector
        self._vector_lookup: tuple[tuple, VectorLookup] | None = None

    @classmethod
    def open(cls, settings: Settings | None = None, **overrides) -> Lookalike:
        return cls(settings if settings is not None else load_settings(**overrides))

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Lookalike:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- model ---------------------------------------------------------------

    @cached_property
    def model(self) -> EmbeddingModel:
        return load_model(current_model_spec(self.settings), self.settings)

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(
            self.model,
            device=self.settings.device,
            precision=self.settings.precision,
            batch_size=self.settings.batch_size,
            workers=self.settings.loader_workers,
            max_pixels=self.settings.max_image_pixels,
            runtime=self.settings.runtime,
            cache_dir=self.settings.runtime_cache_dir,
        )

    @cached_property
    def vectors(self) -> VectorStore:
        return VectorStore(self.settings.vectors_dir, self.model.version, self.model.dim)

    # -- pipeline ------------------------------------------------------------

    def ingest(
        self, source: str | Path, progress: bool = False, *, register: bool = False
    ) -> JobProgress:
        """Take in a folder, a manifest, an image file or a site's URL, as one job, here.

        Downloads, stores, embeds and indexes (:func:`indexer.jobs.run_inline`); every
        image ends stored or failed with its reason (``.failures``), nothing is raised
        for one bad image. ``register`` remembers the source for scheduled re-crawls.
        """
        job = submit_source(self.catalog, self.settings, source, register=register)
        return run_inline(self, job.id, progress_bar=progress)

    def embed(self, progress: bool = False, limit: int | None = None) -> EmbedReport:
        """Embed every item the current model has not embedded yet.

        Work is committed in chunks (vectors first, then the catalog), so an
        interrupted run loses at most one chunk and a re-run picks up the rest;
        a chunk embedded twice leaves one vector per item (the store keeps the latest).
        """
        pending = self.catalog.items_needing_embedding(self.model.version)
        if limit is not None:
            pending = pending[:limit]
        return self.embed_items(pending, progress=progress)

    def embed_items(self, items: Sequence[Item], progress: bool = False) -> EmbedReport:
        """Embed these items with the current model, committed in chunks like :meth:`embed`.

        The caller picks the items (a worker: one job chunk's); embedding an item
        again replaces its vector, so a repeated call never duplicates one.
        """
        version = self.model.version
        embedded, failed = 0, []
        items = list(items)
        for start in range(0, len(items), EMBED_CHUNK):
            chunk = items[start : start + EMBED_CHUNK]
            paths = [self.settings.home / item.stored_path for item in chunk]
            done_ids, done_vectors = [], []
            for batch in self.embedder.embed_paths(paths, progress=progress):
                for position, vector in zip(batch.indices, batch.vectors, strict=True):
                    done_ids.append(chunk[position].id)
                    done_vectors.append(vector)
                for position, reason in batch.failures:
                    item = chunk[position]
                    self.catalog.mark_failed(item.id, reason)
                    failed.append((item.id, reason))
            if done_ids:
                self.vectors.append(
                    np.array([vector_id_for(i) for i in done_ids], dtype=np.int64),
                    np.stack(done_vectors).astype(np.float32),
                )
                self.catalog.mark_embedded(done_ids, version)
                embedded += len(done_ids) - self._drop_deleted_meanwhile(done_ids)
        log.info("embedded %d items with %s, %d failed", embedded, version, len(failed))
        return EmbedReport(version, embedded, failed)

    def _drop_deleted_meanwhile(self, item_ids: Sequence[str]) -> int:
        """Tombstone again the vectors just written for items deleted while they were embedded.

        Their delete tombstoned the vector before this append revived it, and the index
        writer may have purged their rows already: nothing else would take it out, and
        the next index built from the vector store would hold it. Returns how many.
        """
        live = self.catalog.get_many(item_ids)
        gone = [i for i in item_ids if i not in live or live[i].status == ItemStatus.DELETED]
        if gone:
            self.vectors.delete(np.array([vector_id_for(i) for i in gone], dtype=np.int64))
            log.info("%d items were deleted while being embedded; their vectors dropped",
                     len(gone))  # fmt: skip
        return len(gone)

    def build_index(self, shards: int | None = None, factory: str | None = None) -> str:
        """Build a new index version from the vector store and make it current."""
        ids, vectors = self.vectors.load()  # deleted items are tombstoned there
        if len(ids) == 0:
            raise NoIndexError("nothing to index: ingest and embed some images first")
        version = self.indexes.build(
            ids,
            vectors,
            model_version=self.model.version,
            n_shards=shards or self.settings.shards,
            factory=factory or self.settings.index_factory,
            flat_threshold=self.settings.flat_threshold,
            pq_threshold=self.settings.pq_threshold,
            index_dim=self.settings.index_dim,
        )
        version = self.indexes.activate_without(version, self.gone_since(ids))
        self.catalog.mark_indexed(self._item_ids_for(ids))
        return version

    def gone_since(self, vector_ids: np.ndarray) -> Callable[[], np.ndarray]:
        """Asks, when called, which of ``vector_ids`` (read earlier) are deleted by now.

        A build reads its vectors long before it switches; the index writer calls
        this under its lock (:meth:`IndexStore.activate_without`) so an item deleted
        in between never comes back with the new version.
        """

        def gone() -> np.ndarray:
            tombstoned = np.setdiff1d(vector_ids, self.vectors.ids())
            deleted = np.array(
                [vector_id_for(item.id) for item in self.catalog.deleted_items()], dtype=np.int64
            )
            return np.union1d(tombstoned, np.intersect1d(vector_ids, deleted))

        return gone

    def update_index(self) -> str:
        """Add embedded-but-unindexed items to the current index without a rebuild.

        Builds from scratch when there is no index yet or it belongs to another model.
        """
        current = self.indexes.current_version()
        if current is None or self.indexes.manifest(current).model_version != self.model.version:
            return self.build_index()
        pending = self.catalog.items_with_status("embedded")
        if not pending:
            return current
        wanted = np.array([vector_id_for(item.id) for item in pending], dtype=np.int64)
        ids, vectors = self.vectors.load()
        keep = np.isin(ids, wanted)
        version = self.indexes.add(
            ids[keep], vectors[keep], expected_model_version=self.model.version
        )
        self.catalog.mark_indexed([item.id for item in pending])
        return version

    def mark_deleted(self, item_ids: Sequence[str]) -> int:
        """Delete items for every search from now on; the index change is the writer's.

        The catalog marks them deleted (no search joins them any more) and their
        vectors are tombstoned (no index built from here on holds them). Taking them
        out of the live index is :func:`indexer.jobs.apply_deletions`, run by the
        single index writer: the ``index`` queue's worker, or :meth:`delete` here.
        Returns how many items were newly deleted.
        """
        marked = self.catalog.mark_deleted(item_ids)
        if marked:
            self.vectors.delete(np.array([vector_id_for(i) for i in item_ids], dtype=np.int64))
        return marked

    def delete(self, item_id: str) -> bool:
        """Delete an item and apply it to the index here, as the writer (CLI, Python API)."""
        if not self.mark_deleted([item_id]):
            return False
        apply_deletions(self)
        return True

    # -- search --------------------------------------------------------------

    def search(
        self,
        query: Query,
        k: int = 10,
        *,
        label: str | None = None,
        product_id: str | None = None,
        min_score: float | None = None,
        group_by_product: bool = False,
        box: Box | Sequence[float] | str | None = None,
    ) -> SearchResult:
        """The ``k`` catalogue items that look most like ``query``, best first.

        ``query``: image bytes, a path or a PIL image; an :class:`ItemQuery` or
        :class:`Item` (its stored vector); or a vector (see :mod:`indexer.search`).
        ``k`` is from 1 to ``settings.api_search_max_k``. ``label`` and ``product_id``
        restrict the index search itself to the catalogue's matching items (exact: see
        :mod:`indexer.index.searcher`); ``min_score`` ends the list at the first lower
        score; ``group_by_product`` (one hit per product) searches deeper and groups.
        Fewer than ``k`` hits may come back (``result.complete`` is then False). Every
        hit and both reported versions come from one index version, even while
        ``CURRENT`` moves.

        ``box`` ``(x0, y0, x1, y1)`` searches by a region of the query photo instead: the
        crop (:mod:`indexer.regions`; pixels of the image as displayed, after EXIF
        orientation) is embedded as the query. For an item query the box crops the
        item's stored original image and embeds that crop (not its stored vector); a
        vector query cannot take a box. ``result.box`` is the pixel box cropped.

        Raises :class:`ValueError` for a bad ``k`` or vector, :class:`~indexer.regions.BadBox`
        (a ValueError) for a box that is malformed, inverted, under 16x16 pixels or
        outside the photo, ``ImageRejected`` for an image we refuse, :class:`UnknownItem` /
        :class:`ItemNotEmbedded` for an item query without a vector (or, with a box,
        without a stored image: UnknownItem), :class:`NoIndexError` before any index.
        """
        k = check_k(k, self.settings.api_search_max_k)
        filters = Filters(label, product_id, min_score, group_by_product)
        region = Box.of(box) if box is not None else None
        searcher = self.searcher()  # one version for the whole search
        if region is None:
            vector, cropped = self._query_vector(query), None
        else:
            vector, cropped = self._region_vector(query, region)
        manifest = searcher.index.manifest
        within = (self.catalog.vector_ids_matching(label=label, product_id=product_id)
                  if filters.restricts else None)
        candidates = manifest.total if within is None else min(manifest.total, len(within))
        depth = filters.depth(k, candidates, MAX_K)
        hits: list[SearchHit] = []
        if depth > 0:
            scores, found = searcher.search(vector, depth, within=within)
            items = self.catalog.by_vector_ids([int(v) for v in found[0] if v >= 0])
            hits = filters.select(scores[0], found[0], items, k)
        return SearchResult(hits, k, searcher.version, manifest.model_version, depth, cropped)

    def _query_vector(self, query: Query) -> np.ndarray:
        if isinstance(query, Item):
            query = ItemQuery(query.id)
        if isinstance(query, ItemQuery):
            vector = self.item_vector(query.item_id)
            if vector is None:
                item = self.catalog.get(query.item_id)
                if item is None or item.status == ItemStatus.DELETED:
                    raise UnknownItem(f"no item {query.item_id}")
                raise ItemNotEmbedded(f"item {query.item_id} has no vector yet (not embedded)")
            return vector
        if isinstance(query, np.ndarray):
            vector = np.asarray(query, dtype=np.float32)
            if vector.ndim == 2 and len(vector) == 1:
                return vector
            if vector.ndim != 1:
                raise ValueError(f"a query vector is [dim] or [1, dim], got {vector.shape}")
            return vector[None, :]
        return self.embedder.embed_images([self._query_image(query)])

    def _query_image(self, query: Query) -> Image.Image:
        """A query photo decoded upright, as the intake's limits allow."""
        if isinstance(query, Image.Image):
            return to_rgb(query)
        data = query if isinstance(query, bytes) else Path(query).read_bytes()
        return load_image(
            data, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        ).image

    def _region_vector(self, query: Query, box: Box) -> tuple[np.ndarray, PixelBox]:
        """The embedding of ``box``'s crop of the query photo, and the pixel box cut."""
        if isinstance(query, np.ndarray):
            raise ValueError("a box needs a query photo (image or item), not a vector")
        if isinstance(query, Item):
            query = ItemQuery(query.id)
        if isinstance(query, ItemQuery):
            image = self._stored_image(query.item_id)
        else:
            image = self._query_image(query)
        region, cropped = crop(image, box)
        return self.embedder.embed_images([region]), cropped

    def _stored_image(self, item_id: str) -> Image.Image:
        """An item's stored original, decoded upright (the pixels a box on it refers to)."""
        item = self._stored_item(item_id, UnknownItem, purpose=" to crop")
        return load_image(self.settings.home / item.stored_path,
                          max_pixels=self.settings.max_image_pixels).image

    # -- explain -------------------------------------------------------------

    @cached_property
    def explainer(self) -> Explainer:
        return Explainer(self.embedder)

    def explain(
        self, query: Query, result_item_id: str, *, method: str = DECOMPOSITION,
        box: Box | Sequence[float] | str | None = None,
    ) -> Explanation:
        """Where the similarity of ``query`` and a catalogued item comes from.

        ``query`` as :meth:`search` takes it, but with pixels: image bytes, a path, a PIL
        image, or an :class:`ItemQuery` / :class:`Item` (its stored original); not a
        vector. ``method``: ``"decomposition"`` (exact: the maps sum to the score) or
        ``"occlusion"`` (see :mod:`indexer.explain`). The score is the pair's cosine with
        the current model in float32: the search's score for fp32 vectors, and some
        hundredths off it where the search runs in bf16; ``search_score`` is the search's
        own (:class:`~indexer.explain.Explanation`).

        ``box`` explains a region query (as :meth:`search` takes it): the crop of the
        query photo is the query, and its map covers the crop.

        Raises :class:`UnknownResultItem` for a result item that is not catalogued,
        deleted or without a stored image, :class:`UnknownItem` for such a query item,
        ``ImageRejected`` for a query image we refuse, :class:`ValueError` for a bad
        method or a vector query, :class:`~indexer.regions.BadBox` for a bad box.
        """
        method = check_method(method)
        region = Box.of(box) if box is not None else None
        explainer, home = self.explainer, self.settings.home
        result = explainer.stored(self._stored_item(result_item_id, UnknownResultItem), home)
        if isinstance(query, Item):
            query = ItemQuery(query.id)
        if region is not None:
            if isinstance(query, np.ndarray):
                raise ValueError("a box needs a query photo (image or item), not a vector")
            image = (self._stored_image(query.item_id) if isinstance(query, ItemQuery)
                     else self._query_image(query))
            image, _ = crop(image, region)
            shown = explainer.image(image)
            query_vector = self.embedder.embed_pixels(shown.pixels)
        elif isinstance(query, ItemQuery):
            shown = explainer.stored(self._stored_item(query.item_id, UnknownItem), home)
            query_vector = self.item_vector(query.item_id)
        elif isinstance(query, np.ndarray):
            raise ValueError("explain needs the query's pixels: an image or an item, not a vector")
        else:
            image = self._query_image(query)
            shown = explainer.image(image)
            query_vector = self.embedder.embed_pixels(shown.pixels)
        stored = self.item_vector(result_item_id)
        search_score = (None if query_vector is None or stored is None
                        else float(query_vector[0] @ stored[0]))
        return explainer.explain(shown, result, method, model_version=self.model.version,
                                 result_item_id=result_item_id, search_score=search_score)

    def _stored_item(self, item_id: str, missing: type[UnknownItem], purpose: str = "") -> Item:
        """A catalogued, not deleted item whose original is stored, else ``missing``
        (never naming the server's paths to a client)."""
        item = self.catalog.get(item_id)
        if item is None or item.status == ItemStatus.DELETED:
            raise missing(f"no item {item_id}")
        if not item.stored_path or not (self.settings.home / item.stored_path).is_file():
            raise missing(f"item {item_id} has no stored image{purpose}")
        return item

    def item_vector(self, item_id: str) -> np.ndarray | None:
        """The current model's stored vector of an item (1 x dim), or None if it has none.

        The one id → vector lookup: the vector store's parts memory-mapped (their pages
        shared by every process through the page cache), the id table resolved again
        only when the parts change (new vectors, deletions).
        """
        parts = tuple(self.vectors.part_paths())
        cached = self._vector_lookup
        if cached is None or cached[0] != parts:
            cached = self._vector_lookup = (parts, self.vectors.lookup())
        return cached[1].get(vector_id_for(item_id))

    def loaded_searcher(self) -> tuple[str, ShardedSearcher] | None:
        """The (version, searcher) already in memory, without looking at CURRENT."""
        return self._searcher

    def searcher(self) -> ShardedSearcher:
        """The searcher of the current index version, reloaded when CURRENT moves.

        Thread-safe: one thread loads a new version while the others keep the one
        they hold. A new version that fails verification (a truncated or tampered
        shard) is refused and the version already in memory keeps serving; with
        none in memory the error is raised, never an empty index served.
        """
        version = self.indexes.current_version()
        if version is None:
            raise NoIndexError("no index yet: run `lookalike index build` first")
        held = self._searcher
        if held is not None and held[0] == version:
            return held[1]
        with self._searcher_swap:
            held = self._searcher
            if held is not None and held[0] == version:  # loaded while we waited
                return held[1]
            try:
                loaded = self.indexes.load(version, expected_model_version=self.model.version)
            except IndexLoadError:
                if held is None:
                    raise
                log.exception("index %s refused; still serving %s", version, held[0])
                return held[1]
            # The old searcher is not closed here: a concurrent request may still hold it;
            # its idle shard threads end when it is garbage-collected.
            self._searcher = (version, ShardedSearcher(loaded, self.settings.search_threads))
        return self._searcher[1]

    # -- helpers -------------------------------------------------------------

    def _item_ids_for(self, vector_ids: Sequence[int] | np.ndarray) -> list[str]:
        items = self.catalog.by_vector_ids([int(v) for v in vector_ids])
        return [item.id for item in items.values()]

    def stats(self) -> dict:
        current = self.indexes.current_version()
        return {
            "home": str(self.settings.home),
            "items": self.catalog.counts(),
            "model": current_model_spec(self.settings),
            "index": self.indexes.manifest(current).to_dict() if current else None,
        }


__all__ = [
    "EmbedReport", "Explanation", "ImageRejected", "ItemNotEmbedded", "ItemQuery", "Lookalike",
    "NoIndexError", "Query", "SearchHit", "SearchResult", "UnknownItem", "UnknownResultItem",
]  # fmt: skip

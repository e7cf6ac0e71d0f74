"""The public Python API: open a catalogue, ingest, embed, build the index, search.

The CLI is a thin layer over this module, and so will the workers and the HTTP
API be. A shop's own code can use it directly::

    from indexer import Lookalike

    with Lookalike.open(home="shop-data") as engine:
        engine.ingest("photos/")          # folder, manifest or site: stored, embedded, indexed
        engine.embed()                    # vectors for anything stored earlier
        engine.build_index(shards=4)      # new index version, switched in atomically
        for hit in engine.search_image("query.jpg", k=5):
            print(hit.score, hit.item.product_id, hit.item.label)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from indexer.catalog import Catalog, Item, vector_id_for
from indexer.config import Settings, load_settings
from indexer.images import ImageRejected, load_image
from indexer.index.errors import IndexLoadError
from indexer.index.searcher import ShardedSearcher
from indexer.index.store import IndexStore
from indexer.jobs import JobProgress, run_inline, submit_source
from indexer.model.embed import Embedder
from indexer.model.modeldir import EmbeddingModel, current_model_spec, load_model
from indexer.vectors import VectorStore

log = logging.getLogger(__name__)

EMBED_CHUNK = 512  # items per committed chunk: an interrupted run redoes at most this many


class NoIndexError(RuntimeError):
    """Searching before any index version exists."""


@dataclass(frozen=True)
class EmbedReport:
    model_version: str
    embedded: int
    failed: list[tuple[str, str]]  # (item id, reason)


@dataclass(frozen=True)
class SearchHit:
    item: Item
    score: float

    def as_dict(self, home: Path) -> dict:
        return {
            "item_id": self.item.id,
            "score": round(float(self.score), 6),
            "label": self.item.label,
            "product_id": self.item.product_id,
            "title": self.item.title,
            "path": str(home / self.item.stored_path) if self.item.stored_path else None,
        }


class Lookalike:
    """One data directory: its catalog, stored images, vectors and index versions."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog.open(settings.catalog_url)
        self.indexes = IndexStore.from_settings(settings)
        self._searcher: tuple[str, ShardedSearcher] | None = None
        # (vector-store parts, sorted ids, their vectors): see item_vector
        self._vector_lookup: tuple[tuple, np.ndarray, np.ndarray] | None = None

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
                embedded += len(done_ids)
        log.info("embedded %d items with %s, %d failed", embedded, version, len(failed))
        return EmbedReport(version, embedded, failed)

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
            activate=True,
        )
        self.catalog.mark_indexed(self._item_ids_for(ids))
        return version

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

    def delete(self, item_id: str) -> bool:
        """Remove an item from the catalog, the vector store and the current index."""
        item = self.catalog.get(item_id)
        if item is None:
            return False
        vector_id = np.array([vector_id_for(item_id)], dtype=np.int64)
        if self.indexes.current_version() is not None:
            self.indexes.remove(vector_id)
        if item.model_version == self.model.version:
            self.vectors.delete(vector_id)
        self.catalog.delete(item_id)
        return True

    def remove_items(self, item_ids: Sequence[str]) -> int:
        """Delete many items at once: one new index version, one tombstone part.

        The index goes first and the catalog last, so an interrupted removal is
        simply done again. Returns how many catalog rows were deleted.
        """
        items = self.catalog.get_many(item_ids)
        if not items:
            return 0
        vector_ids = np.array([vector_id_for(i) for i in items], dtype=np.int64)
        if self.indexes.current_version() is not None:
            self.indexes.remove(vector_ids)
        self.vectors.delete(vector_ids)
        removed = sum(self.catalog.delete(item_id) for item_id in items)
        log.info("removed %d items", removed)
        return removed

    # -- search --------------------------------------------------------------

    def search_image(self, image: str | Path | bytes, k: int = 10) -> list[SearchHit]:
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        loaded = load_image(
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
        )
        query = self.embedder.embed_images([loaded.image])
        return self._search_vectors(query, k)[0]

    def search_item(self, item_id: str, k: int = 10) -> list[SearchHit]:
        """Search with an item's stored vector (no image decoding, no forward pass).

        Reads the vector store to find the vector: fine for the CLI and tests; a
        long-running server should keep an id → vector lookup instead.
        """
        ids, vectors = self.vectors.load()
        match = np.flatnonzero(ids == vector_id_for(item_id))
        if len(match) == 0:
            raise KeyError(f"item {item_id} has no vector for model {self.model.version}")
        return self._search_vectors(vectors[match[:1]], k)[0]

    def item_vector(self, item_id: str) -> np.ndarray | None:
        """The current model's stored vector of an item (1 x dim), or None if it has none.

        For a long-running server: the vector store is read once into a sorted id
        array and read again only when its parts change (new vectors, deletions).
        """
        parts = tuple(self.vectors.part_paths())
        if self._vector_lookup is None or self._vector_lookup[0] != parts:
            ids, vectors = self.vectors.load()  # sorted by id
            self._vector_lookup = (parts, ids, vectors)
        _, ids, vectors = self._vector_lookup
        wanted = vector_id_for(item_id)
        position = int(np.searchsorted(ids, wanted))
        if position >= len(ids) or ids[position] != wanted:
            return None
        return vectors[position : position + 1]

    def loaded_searcher(self) -> tuple[str, ShardedSearcher] | None:
        """The (version, searcher) already in memory, without looking at CURRENT."""
        return self._searcher

    def searcher(self) -> ShardedSearcher:
        """The searcher of the current index version, reloaded when CURRENT moves.

        A new version that fails verification (a truncated or tampered shard) is
        refused and the version already in memory keeps serving; with none in
        memory the error is raised, never an empty index served.
        """
        version = self.indexes.current_version()
        if version is None:
            raise NoIndexError("no index yet: run `lookalike index build` first")
        if self._searcher is None or self._searcher[0] != version:
            try:
                loaded = self.indexes.load(version, expected_model_version=self.model.version)
            except IndexLoadError:
                if self._searcher is None:
                    raise
                log.exception("index %s refused; still serving %s", version, self._searcher[0])
                return self._searcher[1]
            # The old searcher is not closed here: a concurrent request may still hold it;
            # its idle shard threads end when it is garbage-collected.
            self._searcher = (version, ShardedSearcher(loaded, self.settings.search_threads))
        return self._searcher[1]

    def _search_vectors(self, queries: np.ndarray, k: int) -> list[list[SearchHit]]:
        scores, found = self.searcher().search(queries, k)
        items = self.catalog.by_vector_ids([int(v) for v in found.ravel() if v >= 0])
        return [
            [
                SearchHit(items[int(v)], float(s))
                for s, v in zip(row_scores, row_ids, strict=True)
                if v >= 0 and int(v) in items
            ]
            for row_scores, row_ids in zip(scores, found, strict=True)
        ]

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


__all__ = ["Lookalike", "SearchHit", "EmbedReport", "NoIndexError", "ImageRejected"]

"""Writing index versions: build one from scratch, or add and remove vectors copy-on-write.

A build trains and fills every shard (:mod:`indexer.index.builder`) in a new
version directory and writes its manifest last. An incremental ``add``/``remove``
writes a new version in which only the shards it touches are rewritten and the
others are hard links to the previous version's files, then switches ``CURRENT``
(:meth:`~indexer.index.versions.IndexVersions.switch`). Either way a version is
complete on disk before anything names it, and every write holds the writer lock.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.config import Settings
from indexer.fsutil import fsync_dir
from indexer.index.builder import add_rows, build_shards, check_pairs, plan_shards
from indexer.index.errors import IndexBuildError, IndexDiskFullError, IndexLoadError
from indexer.index.factory import HNSW_QUANTIZER_NLIST, INDEX_DIM, NPROBE_RULE, resolve_spec
from indexer.index.manifest import Manifest, ShardEntry, utc_now_iso, write_manifest
from indexer.index.shards import check_ids, read_shard, split_by_shard, write_shard
from indexer.index.versions import IndexVersions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """How a build shards and chooses its index when the caller does not say."""

    n_shards: int = 1
    factory: str = "auto"
    flat_threshold: int = 50_000
    pq_threshold: int = 2_000_000
    index_dim: int = INDEX_DIM
    hnsw_nlist: int = HNSW_QUANTIZER_NLIST

    @classmethod
    def from_settings(cls, settings: Settings) -> BuildOptions:
        return cls(
            n_shards=settings.shards,
            factory=settings.index_factory,
            flat_threshold=settings.flat_threshold,
            pq_threshold=settings.pq_threshold,
            index_dim=settings.index_dim,
            hnsw_nlist=settings.hnsw_nlist,
        )


class IndexWriter:
    """Writes new versions into ``versions``; the only code that creates shard files."""

    def __init__(self, versions: IndexVersions, defaults: BuildOptions | None = None) -> None:
        self.versions = versions
        self.defaults = defaults or BuildOptions()

    def build(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        model_version: str,
        n_shards: int | None = None,
        factory: str | None = None,
        flat_threshold: int | None = None,
        pq_threshold: int | None = None,
        index_dim: int | None = None,
        hnsw_nlist: int | None = None,
        activate: bool = False,
        seed: int = 0,
    ) -> str:
        """Build a new version from scratch (training IVF centroids); return its name.

        ``ids`` must be unique (the vector store's ``load()`` guarantees it). Options
        left out come from :attr:`defaults`. The version is not made current unless
        ``activate`` is true.
        """
        options = self._options(
            n_shards, factory, flat_threshold, pq_threshold, index_dim, hnsw_nlist
        )
        if not model_version:
            raise ValueError("model_version must be a non-empty string")
        if options.n_shards < 1:
            raise ValueError(f"n_shards must be >= 1, got {options.n_shards}")
        ids, vectors = check_pairs(ids, vectors)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique; load them from the vector store (latest wins)")
        dim = vectors.shape[1]
        plan = plan_shards(ids, options.n_shards)
        smallest = min(len(shard.rows) for shard in plan)
        spec = resolve_spec(
            options.factory,
            smallest,
            dim,
            flat_threshold=options.flat_threshold,
            pq_threshold=options.pq_threshold,
            index_dim=options.index_dim,
            hnsw_nlist=options.hnsw_nlist,
        )
        log.info(
            "building %s: %d vectors, dim %d, %d shards (smallest %d)",
            spec.factory, len(ids), dim, options.n_shards, smallest,
        )
        with self.versions.writer_lock():
            version, directory = self.versions.new_version_dir()
            try:
                entries = build_shards(directory, ids, vectors, spec, plan, seed=seed)
                write_manifest(directory, Manifest(
                    version=version,
                    model_version=model_version,
                    dim=dim,
                    factory=spec.factory,
                    index_type=spec.index_type,
                    nlist=spec.nlist,
                    default_nprobe=spec.default_nprobe,
                    nprobe_rule=NPROBE_RULE if spec.is_ivf else "exact search: no nprobe",
                    n_shards=options.n_shards,
                    shards=tuple(entries),
                    created=utc_now_iso(),
                ))
            except BaseException as error:
                shutil.rmtree(directory, ignore_errors=True)
                _raise_if_disk_full(error, self.versions, version)
                raise
            if activate:
                self.versions.switch(version)
        log.info("built index version %s (%s)", version, spec.factory)
        return version

    def add(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        expected_model_version: str | None = None,
    ) -> str:
        """Add or replace vectors in the current version without retraining.

        An id already in the index has its vector replaced (never duplicated); within
        one call the last occurrence of an id wins. The index type and IVF centroids
        stay as built (a Flat shard that outgrows ``flat_threshold`` stays Flat); the
        scheduled rebuild from the vector store re-chooses and retrains. Each call
        rewrites the shards it touches, so batch additions. Returns the new current
        version.
        """
        return self._update(ids, vectors, expected_model_version=expected_model_version)

    def remove(self, ids: np.ndarray) -> str:
        """Remove vectors by id from the current version; unknown ids are ignored.

        Returns the new current version (the same one if nothing was removed).
        """
        return self._update(ids, None)

    def activate_without(self, version: str, gone: Callable[[], np.ndarray]) -> str:
        """Make a built ``version`` current without the ids ``gone()`` names then.

        A re-index builds from vectors it read minutes ago; an item deleted since
        must not come back with it. ``gone`` is asked under the writer lock, the
        lock every delete's index change takes too, so each delete is either seen
        here or applied to the version this switches to. Returns the version made
        current (a copy-on-write child of ``version`` when something was gone).
        """
        versions = self.versions
        with versions.writer_lock():
            doomed = gone()
            if len(doomed):
                version = self._derive(version, versions.manifest(version), doomed, None)
            versions.verify(version)
            versions.switch(version)
        log.info("index version %s is now current", version)
        return version

    # -- internals -------------------------------------------------------------

    def _options(
        self, n_shards, factory, flat_threshold, pq_threshold, index_dim, hnsw_nlist
    ) -> BuildOptions:
        given = {
            "n_shards": n_shards,
            "factory": factory,
            "flat_threshold": flat_threshold,
            "pq_threshold": pq_threshold,
            "index_dim": index_dim,
            "hnsw_nlist": hnsw_nlist,
        }
        return dataclasses.replace(
            self.defaults, **{name: value for name, value in given.items() if value is not None}
        )

    def _update(
        self,
        ids: np.ndarray,
        vectors: np.ndarray | None,
        *,
        expected_model_version: str | None = None,
    ) -> str:
        versions = self.versions
        with versions.writer_lock():
            parent = versions.require_current()
            old = versions.manifest(parent)
            if expected_model_version is not None and old.model_version != expected_model_version:
                raise IndexBuildError(
                    f"current index {parent} holds model {old.model_version!r} vectors, "
                    f"not {expected_model_version!r}"
                )
            version = self._derive(parent, old, ids, vectors)
            if version != parent:
                versions.switch(version)
        return version

    def _derive(
        self, parent: str, old: Manifest, ids: np.ndarray, vectors: np.ndarray | None
    ) -> str:
        """Write a child of ``parent`` with ``ids`` added (or removed: ``vectors=None``);
        ``parent`` itself when nothing changes. The writer lock is held by the caller."""
        if vectors is None:
            ids = np.unique(check_ids(ids))
        else:
            ids, vectors = check_pairs(ids, vectors, old.dim)
            ids, vectors = _last_wins(ids, vectors)
        plan = split_by_shard(ids, old.n_shards)
        version, directory = self.versions.new_version_dir()
        try:
            entries, changed = self._rewrite_shards(parent, old, directory, ids, vectors, plan)
            if not changed:
                shutil.rmtree(directory, ignore_errors=True)
                log.info("index %s unchanged: none of %d ids were present", parent, len(ids))
                return parent
            fsync_dir(directory)
            manifest = dataclasses.replace(
                old, version=version, shards=tuple(entries), created=utc_now_iso(),
                parent=parent,
            )
            write_manifest(directory, manifest)
        except BaseException as error:
            shutil.rmtree(directory, ignore_errors=True)
            _raise_if_disk_full(error, self.versions, version)
            raise
        log.info(
            "index %s -> %s: %s %d ids, rewrote shards %s",
            parent, version, "removed" if vectors is None else "added", len(ids), changed,
        )
        return version

    def _rewrite_shards(
        self,
        parent: str,
        old: Manifest,
        directory: Path,
        ids: np.ndarray,
        vectors: np.ndarray | None,
        plan: list[np.ndarray],
    ) -> tuple[list[ShardEntry], list[int]]:
        """Copy-on-write: rewrite the shards ``plan`` touches, hard-link the rest."""
        parent_dir = self.versions.root / parent
        entries: list[ShardEntry] = []
        changed: list[int] = []
        for shard, (entry, rows) in enumerate(zip(old.shards, plan, strict=True)):
            if len(rows) == 0:
                entries.append(_reuse(parent_dir / entry.file, directory / entry.file, entry))
                continue
            index = read_shard(parent_dir / entry.file, entry, version=parent, dim=old.dim)
            removed = index.remove_ids(np.ascontiguousarray(ids[rows]))
            if vectors is not None:  # in chunks; one shard takes every row without a copy
                add_rows(index, ids, vectors, None if len(rows) == len(ids) else rows)
            elif removed == 0:
                entries.append(_reuse(parent_dir / entry.file, directory / entry.file, entry))
                continue
            size, digest = write_shard(index, directory / entry.file)
            entries.append(
                ShardEntry(file=entry.file, count=int(index.ntotal), bytes=size, sha256=digest)
            )
            changed.append(shard)
        return entries, changed


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _raise_if_disk_full(error: BaseException, versions: IndexVersions, version: str) -> None:
    """Name a full file system (or quota) clearly; the caller removed ``version`` already.

    The error a job records and an operator reads: which version, where, what is left
    and what still serves. Anything else is re-raised by the caller as it was.
    """
    if not isinstance(error, OSError) or error.errno not in _DISK_FULL:
        return
    root = versions.root
    try:
        free = f"{shutil.disk_usage(root).free} bytes free"
    except OSError:
        free = "free space unknown"
    try:
        current = versions.current_version()
    except IndexLoadError:
        current = None
    serving = f"{current} stays current" if current else "no version is current"
    log.error("disk full writing index version %s in %s (%s)", version, root, free)
    raise IndexDiskFullError(
        f"disk full: no space left on the file system of {root} while writing index "
        f"version {version} ({error.strerror}; {free}); the partial version was removed "
        f"and {serving}; free some space (e.g. `lookalike index prune`) and run it again"
    ) from error


def _last_wins(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop all but the last occurrence of each id (no-op when ids are unique: the
    vectors, perhaps a memory-mapped file, are copied only when there are repeats)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


def _reuse(source: Path, target: Path, entry: ShardEntry) -> ShardEntry:
    """An unchanged shard: hard-link the parent's (immutable) file, or copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
    return entry

"""Index versions on disk: build, verify, load, update copy-on-write, switch CURRENT.

Layout under ``Settings.index_dir``::

    index/
      CURRENT                        # name of the live version, switched atomically
      HISTORY                        # activated versions, by latest activation
      .lock                          # flock'ed by the single writer
      .reindex.lock                  # flock'ed (non-blocking) for a whole re-index
      20261127T140501.123456Z-9f3a/  # a version: immutable once its manifest exists
        shard-00.faiss ... shard-NN.faiss
        manifest.json                # written last

Versions are never modified. An incremental ``add``/``remove`` writes a new version
in which only the shards it touches are rewritten and the others are hard links
to the previous version's files, then switches ``CURRENT``. A reader therefore
sees the old version or the new one, never a mix, and a crash at any point leaves
``CURRENT`` naming a complete version (a directory without a manifest is ignored).

Every switch of ``CURRENT`` is recorded in ``HISTORY``, so ``rollback`` can walk
back through earlier activations and ``prune`` knows which old versions may go.
Deleting a version never harms a newer one: shards shared through hard links stay
on disk until their last link is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.config import Settings
from indexer.fsutil import atomic_write_text, fsync_dir
from indexer.index.builder import build_shards, check_pairs, plan_shards
from indexer.index.errors import (
    IndexBuildError,
    IndexLoadError,
    IndexLockedError,
    IndexNotFoundError,
    NothingToRollBack,
    ReindexRunning,
)
from indexer.index.factory import NPROBE_RULE, resolve_spec
from indexer.index.manifest import (
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    is_version_name,
    new_version_name,
    read_manifest,
    utc_now_iso,
    write_manifest,
)
from indexer.index.shards import (
    check_ids,
    read_shard,
    split_by_shard,
    verify_shard_file,
    write_shard,
)

log = logging.getLogger(__name__)

CURRENT_NAME = "CURRENT"
HISTORY_NAME = "HISTORY"
LOCK_NAME = ".lock"
REINDEX_LOCK_NAME = ".reindex.lock"
# A version directory being deleted is renamed to this first, so that it vanishes
# from readers in one step; a crash mid-delete leaves one for the next prune.
_PRUNING_SUFFIX = ".pruning"


@dataclass(frozen=True)
class LoadedIndex:
    """A verified index version in memory: one faiss index per shard."""

    manifest: Manifest
    shards: tuple[faiss.Index, ...]

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def ntotal(self) -> int:
        return sum(int(shard.ntotal) for shard in self.shards)

    @property
    def nlist(self) -> int:
        return self.manifest.nlist

    @property
    def default_nprobe(self) -> int:
        return self.manifest.default_nprobe


def switch_current(root: Path, version: str) -> None:
    """Point ``CURRENT`` at ``version``: temp file, fsync, rename, fsync the directory."""
    atomic_write_text(root / CURRENT_NAME, version + "\n")


class IndexStore:
    """All index versions under one directory; mutations hold an exclusive file lock.

    ``lock_timeout``: seconds to wait for another writer (``None``: wait forever).
    """

    def __init__(self, root: Path, *, lock_timeout: float | None = None) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs) -> IndexStore:
        return cls(settings.index_dir, **kwargs)

    # -- reading ---------------------------------------------------------------

    def list_versions(self) -> list[str]:
        """Complete versions (with a manifest), oldest first; half-written ones are skipped."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if is_version_name(entry.name) and (entry / MANIFEST_NAME).is_file()
        )

    def current_version(self) -> str | None:
        """The live version's name, or ``None`` before the first activation."""
        try:
            name = (self.root / CURRENT_NAME).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not is_version_name(name):
            raise IndexLoadError(f"{self.root / CURRENT_NAME} holds {name!r}, not a version name")
        return name

    def history(self) -> list[str]:
        """Activated versions, each once, by latest activation; the last is ``CURRENT``.

        Empty before the first activation. Entries may name versions deleted since
        (``rollback`` skips those). If a crash fell between switching ``CURRENT`` and
        recording the switch, the current version is moved to the end here, so the
        crash loses nothing.
        """
        history = self._read_history()
        current = self.current_version()
        if current is not None and history[-1:] != [current]:
            history = _moved_to_end(history, current)
        return history

    def manifest(self, version: str) -> Manifest:
        return read_manifest(self._version_dir(version))

    def load(
        self,
        version: str | None = None,
        *,
        expected_model_version: str | None = None,
        expected_dim: int | None = None,
    ) -> LoadedIndex:
        """Load and verify a version (default: CURRENT), or raise :class:`IndexLoadError`.

        Every shard's size and sha256 are checked against the manifest, and the
        manifest against the caller's model version and dimension: a query embedded
        by one model must never be searched against another model's vectors.
        """
        version = version or self._require_current()
        manifest = self.manifest(version)
        if expected_model_version is not None and manifest.model_version != expected_model_version:
            raise IndexLoadError(
                f"index version {version} was built for model {manifest.model_version!r}, "
                f"expected {expected_model_version!r}; rebuild the index for this model"
            )
        if expected_dim is not None and manifest.dim != expected_dim:
            raise IndexLoadError(
                f"index version {version} has dimension {manifest.dim}, expected {expected_dim}"
            )
        directory = self._version_dir(version)
        shards = tuple(
            read_shard(directory / entry.file, entry, version=version, dim=manifest.dim)
            for entry in manifest.shards
        )
        log.info("loaded index %s: %d vectors in %d shards", version, manifest.total, len(shards))
        return LoadedIndex(manifest=manifest, shards=shards)

    def verify(self, version: str) -> Manifest:
        """Check every shard file of ``version`` against its manifest without loading it."""
        manifest = self.manifest(version)
        directory = self._version_dir(version)
        for entry in manifest.shards:
            verify_shard_file(directory / entry.file, entry, version=version)
        return manifest

    # -- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive ``flock`` on ``index/.lock``: one writer at a time, across processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if self.lock_timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + self.lock_timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES):
                            raise
                        if time.monotonic() >= deadline:
                            raise IndexLockedError(
                                f"another process is writing the index in {self.root} "
                                f"(waited {self.lock_timeout:g}s for {LOCK_NAME})"
                            ) from None
                        time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextlib.contextmanager
    def reindex_lock(self) -> Iterator[None]:
        """Hold ``index/.reindex.lock`` for a whole re-index, or raise :class:`ReindexRunning`.

        A re-index runs for minutes or hours; a second one started meanwhile (a beat
        tick, an API trigger) would only repeat the work, so it fails at once instead
        of queueing the way writers do. The lock is separate from the writer lock,
        which the re-index takes for each write it makes, so other writers are not
        shut out for its whole length. ``flock`` dies with its process: a killed
        worker never leaves the lock behind. The Celery layer adds a Redis lock for
        workers on other machines.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / REINDEX_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
                raise ReindexRunning(
                    f"a re-index of {self.root} is already running "
                    f"({holder or 'holder unknown'}); not starting another"
                ) from None
            # Who holds it, for the message above; cleared again before release.
            os.ftruncate(fd, 0)
            holder = f"pid {os.getpid()} on {socket.gethostname()} since {utc_now_iso()}"
            os.pwrite(fd, holder.encode("utf-8"), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def build(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        model_version: str,
        n_shards: int,
        factory: str = "auto",
        flat_threshold: int = 50_000,
        pq_threshold: int = 2_000_000,
        activate: bool = False,
        seed: int = 0,
    ) -> str:
        """Build a new version from scratch (training IVF centroids); return its name.

        ``ids`` must be unique (the vector store's ``load()`` guarantees it). The
        version is not made current unless ``activate`` is true.
        """
        if not model_version:
            raise ValueError("model_version must be a non-empty string")
        if n_shards < 1:
            raise ValueError(f"n_shards must be >= 1, got {n_shards}")
        ids, vectors = check_pairs(ids, vectors)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique; load them from the vector store (latest wins)")
        dim = vectors.shape[1]
        plan = plan_shards(ids, n_shards)
        smallest = min(len(shard.rows) for shard in plan)
        spec = resolve_spec(
            factory, smallest, dim, flat_threshold=flat_threshold, pq_threshold=pq_threshold
        )
        log.info(
            "building %s: %d vectors, dim %d, %d shards (smallest %d)",
            spec.factory,
            len(ids),
            dim,
            n_shards,
            smallest,
        )
        with self.writer_lock():
            version, directory = self._new_version_dir()
            try:
                entries = build_shards(directory, ids, vectors, spec, plan, seed=seed)
                manifest = Manifest(
                    version=version,
                    model_version=model_version,
                    dim=dim,
                    factory=spec.factory,
                    index_type=spec.index_type,
                    nlist=spec.nlist,
                    default_nprobe=spec.default_nprobe,
                    nprobe_rule=NPROBE_RULE if spec.is_ivf else "exact search: no nprobe",
                    n_shards=n_shards,
                    shards=tuple(entries),
                    created=utc_now_iso(),
                )
                write_manifest(directory, manifest)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            if activate:
                self._switch(version)
        log.info("built index version %s (%s)", version, spec.factory)
        return version

    def activate(self, version: str) -> None:
        """Make ``version`` current after checking all its shard files.

        ``version`` moves to the end of the history, so activating an older version
        by name is itself undone by ``rollback``.
        """
        with self.writer_lock():
            self.verify(version)
            self._switch(version)
        log.info("index version %s is now current", version)

    def rollback(self, *, expected_model_version: str | None = None) -> str:
        """Switch ``CURRENT`` to the version most recently active before it; return it.

        Repeated calls walk further back through the history, never to and fro
        between two versions: the version left is dropped from the history. Earlier
        versions that were deleted, fail verification or (given
        ``expected_model_version``) hold another model's vectors are skipped and
        dropped as well, each with a warning, since serving them would fail. Raises
        :class:`NothingToRollBack`, changing nothing, when no usable earlier version
        is left. To ``prune`` the version left counts as never activated: it stays
        while it is newer than the current version, so ``activate`` can bring it back.
        """
        with self.writer_lock():
            current = self.current_version()
            if current is None:
                raise NothingToRollBack(f"no index version is current in {self.root}")
            history = self.history()
            earlier = history[:-1]
            while earlier:
                target = earlier[-1]
                if self._usable(target, expected_model_version):
                    break
                earlier.pop()
            else:
                model = (
                    ""
                    if expected_model_version is None
                    else f" for model {expected_model_version!r}"
                )
                raise NothingToRollBack(
                    f"no earlier index version{model} to roll back to from {current} "
                    f"in {self.root} ({len(history) - 1} earlier activations recorded)"
                )
            # HISTORY first, CURRENT second: see the note above _read_history.
            self._write_history(earlier)
            switch_current(self.root, target)
        log.warning("index rolled back from %s to %s", current, target)
        return target

    def prune(self, keep: int = 2) -> list[str]:
        """Delete versions no longer needed; return their names, oldest first.

        Kept: the current version and the most recently activated ones that still
        exist, ``keep`` in all, and versions never activated (or rolled back from)
        that are newer than the current one, since they may yet be activated.
        Deleted: older activated versions, versions never activated that are older
        than the current one (left by a crash between writing a version and
        switching to it, or superseded), and directories without a manifest
        (half-written). With no current version, only the latter go. Runs under
        the writer lock, so no version is being written or switched to meanwhile.
        Shard files that a kept version shares through hard links stay on disk.
        Shard checksums are not read here: ``rollback`` verifies what it picks.
        With ``keep=1`` a searcher that read the previous ``CURRENT`` just before a
        switch may find that version gone while loading it; the default leaves it.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(
                f"keep must be an integer >= 1 (the current version is always kept), got {keep!r}"
            )
        with self.writer_lock():
            self._sweep_leftovers()
            current = self.current_version()
            history = self.history()
            complete = set(self.list_versions())
            kept = {current} if current is not None else set()
            for version in reversed(history):
                if len(kept) >= keep:
                    break
                if version in complete:
                    kept.add(version)
            activated = set(history)
            doomed: list[tuple[str, str]] = []
            for entry in sorted(self.root.iterdir()):
                name = entry.name
                if name in kept or not is_version_name(name) or not entry.is_dir():
                    continue
                if name not in complete:
                    doomed.append((name, "half-written, no manifest"))
                elif name in activated:
                    doomed.append((name, f"older than the {keep} most recently activated"))
                elif current is not None and name < current:
                    doomed.append((name, f"never activated and older than current {current}"))
            for name, reason in doomed:
                self._delete_version(name)
                log.info("pruned index version %s (%s)", name, reason)
            survivors = (complete | kept) - {name for name, _ in doomed}
            compacted = [v for v in history if v in survivors]
            if compacted != self._read_history():
                self._write_history(compacted)
        return [name for name, _ in doomed]

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

    # -- internals -------------------------------------------------------------

    def _version_dir(self, version: str) -> Path:
        if not is_version_name(version):
            raise IndexNotFoundError(f"{version!r} is not an index version name")
        directory = self.root / version
        if not directory.is_dir():
            raise IndexNotFoundError(f"index version {version} does not exist in {self.root}")
        return directory

    def _require_current(self) -> str:
        version = self.current_version()
        if version is None:
            raise IndexNotFoundError(f"no index version is current in {self.root}; build one first")
        return version

    # Why a HISTORY file rather than a ``previous`` name: one name undoes one step
    # only, and a second rollback would toggle back to the version just left; the
    # manifest cannot hold it either (versions are immutable, and one version may be
    # activated many times). HISTORY lists each activated version once, oldest
    # first, in the order of its latest activation: a switch moves the version to
    # the end, ``rollback`` drops the last one (so it never returns to a version it
    # left), ``prune`` drops deleted versions. Because lines are removed, the file
    # is rewritten whole through temp file, fsync and rename, like CURRENT, never
    # appended to, so no reader meets a torn line; prune keeps it short. The order
    # of the two writes makes a crash between them harmless: a switch writes
    # CURRENT first and HISTORY second (``history()`` puts a CURRENT that is not
    # recorded yet at the end); a rollback writes HISTORY first and CURRENT second
    # (the CURRENT not yet switched is put at the end again: no rollback happened).

    def _read_history(self) -> list[str]:
        path = self.root / HISTORY_NAME
        try:
            lines = path.read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return []
        versions = [line for line in lines if is_version_name(line)]
        if len(versions) != len(lines):
            log.warning(
                "%s: ignored %d lines that are not version names", path, len(lines) - len(versions)
            )
        return _last_occurrences(versions)

    def _write_history(self, versions: list[str]) -> None:
        """Replace HISTORY atomically; the caller holds the writer lock."""
        atomic_write_text(self.root / HISTORY_NAME, "".join(f"{v}\n" for v in versions))

    def _switch(self, version: str) -> None:
        """Make ``version`` current and move it to the end of the history (lock held)."""
        try:
            history = self.history()
        except IndexLoadError:  # CURRENT holds garbage: activating a version repairs it
            history = self._read_history()
        switch_current(self.root, version)
        if history[-1:] != [version]:
            try:
                self._write_history(_moved_to_end(history, version))
            except OSError as exc:  # the switch stands; history() puts CURRENT last anyway
                log.warning("%s not updated for %s: %s", HISTORY_NAME, version, exc)

    def _usable(self, version: str, expected_model_version: str | None) -> bool:
        """Whether rollback may serve ``version``: it verifies and holds the right model."""
        try:
            manifest = self.verify(version)
        except IndexLoadError as exc:
            log.warning("rollback skips index version %s: %s", version, exc)
            return False
        if expected_model_version is not None and manifest.model_version != expected_model_version:
            log.warning(
                "rollback skips index version %s: built for model %r, not %r",
                version,
                manifest.model_version,
                expected_model_version,
            )
            return False
        return True

    def _delete_version(self, version: str) -> None:
        """Rename first (the version vanishes at once), then delete the files."""
        trash = self.root / f".{version}{_PRUNING_SUFFIX}"
        os.rename(self.root / version, trash)
        fsync_dir(self.root)
        _remove_tree(trash)

    def _sweep_leftovers(self) -> None:
        """Remove what crashed writers left behind, under the writer lock.

        Half-deleted versions, and temp files of CURRENT and HISTORY: no writer is
        active while the lock is held, so none of them is still being written.
        """
        temp_prefixes = (f".{CURRENT_NAME}.", f".{HISTORY_NAME}.")
        for entry in self.root.iterdir():
            name = entry.name
            if name.startswith(".") and name.endswith(_PRUNING_SUFFIX) and entry.is_dir():
                _remove_tree(entry)
            elif name.startswith(temp_prefixes) and name.endswith(".tmp") and entry.is_file():
                entry.unlink(missing_ok=True)
                log.info("removed stale temp file %s", entry)

    def _new_version_dir(self) -> tuple[str, Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            version = new_version_name()
            directory = self.root / version
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            return version, directory

    def _update(
        self,
        ids: np.ndarray,
        vectors: np.ndarray | None,
        *,
        expected_model_version: str | None = None,
    ) -> str:
        with self.writer_lock():
            parent = self._require_current()
            old = self.manifest(parent)
            if expected_model_version is not None and old.model_version != expected_model_version:
                raise IndexBuildError(
                    f"current index {parent} holds model {old.model_version!r} vectors, "
                    f"not {expected_model_version!r}"
                )
            if vectors is None:
                ids = np.unique(check_ids(ids))
            else:
                ids, vectors = check_pairs(ids, vectors, old.dim)
                ids, vectors = _last_wins(ids, vectors)
            plan = split_by_shard(ids, old.n_shards)

            version, directory = self._new_version_dir()
            try:
                entries, changed = self._rewrite_shards(parent, old, directory, ids, vectors, plan)
                if not changed:
                    shutil.rmtree(directory, ignore_errors=True)
                    log.info("index %s unchanged: none of %d ids were present", parent, len(ids))
                    return parent
                fsync_dir(directory)
                manifest = dataclasses.replace(
                    old,
                    version=version,
                    shards=tuple(entries),
                    created=utc_now_iso(),
                    parent=parent,
                )
                write_manifest(directory, manifest)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            self._switch(version)
        log.info(
            "index %s -> %s: %s %d ids, rewrote shards %s",
            parent,
            version,
            "removed" if vectors is None else "added",
            len(ids),
            changed,
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
        parent_dir = self.root / parent
        entries: list[ShardEntry] = []
        changed: list[int] = []
        for shard, (entry, rows) in enumerate(zip(old.shards, plan, strict=True)):
            if len(rows) == 0:
                entries.append(_reuse(parent_dir / entry.file, directory / entry.file, entry))
                continue
            index = read_shard(parent_dir / entry.file, entry, version=parent, dim=old.dim)
            removed = index.remove_ids(np.ascontiguousarray(ids[rows]))
            if vectors is not None:
                index.add_with_ids(vectors[rows], ids[rows])
            elif removed == 0:
                entries.append(_reuse(parent_dir / entry.file, directory / entry.file, entry))
                continue
            size, digest = write_shard(index, directory / entry.file)
            entries.append(
                ShardEntry(file=entry.file, count=int(index.ntotal), bytes=size, sha256=digest)
            )
            changed.append(shard)
        return entries, changed


def _last_wins(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop all but the last occurrence of each id (no-op when ids are unique)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


def _moved_to_end(history: list[str], version: str) -> list[str]:
    """``history`` after activating ``version``: each version is listed once."""
    return [v for v in history if v != version] + [version]


def _last_occurrences(versions: list[str]) -> list[str]:
    """Keep each version's last entry only (HISTORY as written holds no repeats)."""
    return list(reversed(dict.fromkeys(reversed(versions))))


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        log.warning("could not delete %s (%s); the next prune tries again", path, exc)


def _reuse(source: Path, target: Path, entry: ShardEntry) -> ShardEntry:
    """An unchanged shard: hard-link the parent's (immutable) file, or copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
    return entry


# -- module-level API over Settings -------------------------------------------


def build_index(
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    model_version: str,
    n_shards: int | None = None,
    factory: str | None = None,
    settings: Settings,
    activate: bool = False,
) -> str:
    """Build a version under ``settings.index_dir``; shards and factory default to settings."""
    return IndexStore.from_settings(settings).build(
        ids,
        vectors,
        model_version=model_version,
        n_shards=n_shards or settings.shards,
        factory=factory or settings.index_factory,
        flat_threshold=settings.flat_threshold,
        pq_threshold=settings.pq_threshold,
        activate=activate,
    )


def activate(version: str, *, settings: Settings) -> None:
    IndexStore.from_settings(settings).activate(version)


def current_version(*, settings: Settings) -> str | None:
    return IndexStore.from_settings(settings).current_version()


def list_versions(*, settings: Settings) -> list[str]:
    return IndexStore.from_settings(settings).list_versions()


def load(
    version: str | None = None,
    *,
    settings: Settings,
    expected_model_version: str | None = None,
    expected_dim: int | None = None,
) -> LoadedIndex:
    return IndexStore.from_settings(settings).load(
        version, expected_model_version=expected_model_version, expected_dim=expected_dim
    )


def add(
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    settings: Settings,
    expected_model_version: str | None = None,
) -> str:
    return IndexStore.from_settings(settings).add(
        ids, vectors, expected_model_version=expected_model_version
    )


def remove(ids: np.ndarray, *, settings: Settings) -> str:
    return IndexStore.from_settings(settings).remove(ids)


def history(*, settings: Settings) -> list[str]:
    return IndexStore.from_settings(settings).history()


def rollback(*, settings: Settings, expected_model_version: str | None = None) -> str:
    return IndexStore.from_settings(settings).rollback(
        expected_model_version=expected_model_version
    )


def prune(keep: int = 2, *, settings: Settings) -> list[str]:
    return IndexStore.from_settings(settings).prune(keep)


def reindex_lock(*, settings: Settings) -> contextlib.AbstractContextManager[None]:
    return IndexStore.from_settings(settings).reindex_lock()

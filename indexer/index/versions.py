"""Index versions on disk: list, verify, load, CURRENT and its history, rollback, prune.

Layout under ``Settings.index_dir``::

    index/
      CURRENT                        # name of the live version, switched atomically
      HISTORY                        # activated versions, by latest activation
      .lock                          # flock'ed by the single writer
      .reindex.lock                  # flock'ed (non-blocking) for a whole re-index
      20261127T140501.123456Z-9f3a/  # a version: immutable once its manifest exists
        shard-00.faiss ... shard-NN.faiss
        manifest.json                # written last

Versions are never modified: :mod:`indexer.index.writer` writes new ones, and this
module decides which one is live. A reader sees the old version or the new one,
never a mix, and a crash at any point leaves ``CURRENT`` naming a complete version
(a directory without a manifest is ignored).

Every switch of ``CURRENT`` is recorded in ``HISTORY``, so ``rollback`` can walk
back through earlier activations and ``prune`` knows which old versions may go.
Deleting a version never harms a newer one: shards shared through hard links stay
on disk until their last link is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import faiss

from indexer.fsutil import atomic_write_text, fsync_dir
from indexer.index.errors import IndexLoadError, IndexNotFoundError, NothingToRollBack
from indexer.index.manifest import (
    MANIFEST_NAME,
    Manifest,
    is_version_name,
    new_version_name,
    read_manifest,
)
from indexer.index.shards import read_shard, verify_shard_file
from indexer.locks import writer_flock

log = logging.getLogger(__name__)

CURRENT_NAME = "CURRENT"
HISTORY_NAME = "HISTORY"
LOCK_NAME = ".lock"
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


class IndexVersions:
    """The versions under one directory; every change holds the writer lock.

    ``lock_timeout``: seconds to wait for another writer (``None``: wait forever).
    """

    def __init__(self, root: Path, *, lock_timeout: float | None = None) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout

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
        return read_manifest(self.version_dir(version))

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
        by one model must never be searched against another model's vectors. The
        shards are memory-mapped, for searching only (:func:`read_shard`): the API's
        processes share one copy of each version's codes.
        """
        version = version or self.require_current()
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
        directory = self.version_dir(version)
        shards = tuple(
            read_shard(directory / entry.file, entry, version=version, dim=manifest.dim,
                       mapped=True)
            for entry in manifest.shards
        )
        log.info("loaded index %s: %d vectors in %d shards", version, manifest.total, len(shards))
        return LoadedIndex(manifest=manifest, shards=shards)

    def verify(self, version: str) -> Manifest:
        """Check every shard file of ``version`` against its manifest without loading it."""
        manifest = self.manifest(version)
        directory = self.version_dir(version)
        for entry in manifest.shards:
            verify_shard_file(directory / entry.file, entry, version=version)
        return manifest

    def version_dir(self, version: str) -> Path:
        """The directory of an existing version, or :class:`IndexNotFoundError`."""
        if not is_version_name(version):
            raise IndexNotFoundError(f"{version!r} is not an index version name")
        directory = self.root / version
        if not directory.is_dir():
            raise IndexNotFoundError(f"index version {version} does not exist in {self.root}")
        return directory

    def require_current(self) -> str:
        version = self.current_version()
        if version is None:
            raise IndexNotFoundError(f"no index version is current in {self.root}; build one first")
        return version

    # -- changing which version is live ------------------------------------------

    def writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive ``flock`` on ``index/.lock``: one writer at a time, across processes."""
        return writer_flock(self.root / LOCK_NAME, timeout=self.lock_timeout)

    def activate(self, version: str) -> None:
        """Make ``version`` current after checking all its shard files.

        ``version`` moves to the end of the history, so activating an older version
        by name is itself undone by ``rollback``.
        """
        with self.writer_lock():
            self.verify(version)
            self.switch(version)
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
            while earlier and not self._usable(earlier[-1], expected_model_version):
                earlier.pop()
            if not earlier:
                model = (
                    ""
                    if expected_model_version is None
                    else f" for model {expected_model_version!r}"
                )
                raise NothingToRollBack(
                    f"no earlier index version{model} to roll back to from {current} "
                    f"in {self.root} ({len(history) - 1} earlier activations recorded)"
                )
            target = earlier[-1]
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
            doomed = self._doomed(current, kept, complete, set(history), keep)
            for name, reason in doomed:
                self._delete_version(name)
                log.info("pruned index version %s (%s)", name, reason)
            survivors = (complete | kept) - {name for name, _ in doomed}
            compacted = [v for v in history if v in survivors]
            if compacted != self._read_history():
                self._write_history(compacted)
        return [name for name, _ in doomed]

    def discard(self, version: str) -> bool:
        """Delete a version that never became current (a re-index that could not switch
        to it); True if it was deleted. The current version is never touched."""
        with self.writer_lock():
            if version == self.current_version() or not (self.root / version).is_dir():
                return False
            self._delete_version(version)
        log.info("discarded index version %s: it was never made current", version)
        return True

    # -- for the writer (it holds the writer lock) --------------------------------

    def new_version_dir(self) -> tuple[str, Path]:
        """A fresh, empty version directory with a unique name."""
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            version = new_version_name()
            directory = self.root / version
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            return version, directory

    def switch(self, version: str) -> None:
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

    # -- internals -------------------------------------------------------------

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

    def _doomed(
        self, current: str | None, kept: set[str], complete: set[str], activated: set[str],
        keep: int,
    ) -> list[tuple[str, str]]:
        """What ``prune`` deletes, each with the reason, by name."""
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
        return doomed

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

"""The vector store: append-only parts of (id, vector) per model version.

It is the source of truth an index is rebuilt from without re-embedding, so it
favours durability and simple recovery over cleverness:

* Each write is a new immutable part, ``part-000001.npz`` (uncompressed numpy
  zip: ``kind``, int64 ``ids`` and, for appends, float32 ``vectors``), written to
  a temp file, fsynced and renamed. Deletions are tombstone parts (``kind`` =
  ``delete``, ids only). Nothing is rewritten in place.
* Reading applies the parts in order: the latest part mentioning an id wins, so
  re-embedding an item appends its new vector and deleting one appends a
  tombstone. ``load()`` does this with sorts over all ids (no Python loop per id)
  and copies each part's surviving rows straight into one output array, so peak
  memory is the result plus one part.
* Names not matching ``part-NNNNNN.npz`` (temp files, editor droppings) are never
  read. A part that does not parse (truncated, bad zip CRC, wrong shapes) raises
  :class:`VectorStoreError` naming the file: a silent gap would drop items from
  every future index.
* ``meta.json`` pins the model version and dimension; opening the directory with
  another dimension raises.

Writers take an exclusive ``flock`` on ``.lock`` so part numbers never collide.

:meth:`VectorStore.lookup` answers "the vector of this id" without loading the store:
the parts are uncompressed zips, so each part's ``vectors`` array is memory-mapped
where it lies in the file. Every API process shares those pages through the page
cache and keeps only ~20 bytes per id of its own (the resolved id → part, row table).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.fsutil import atomic_write_text, atomic_writer

log = logging.getLogger(__name__)

# numpy parses every .npy header with ast.literal_eval, and CPython 3.11 builds ASTs
# with one recursion counter per interpreter: two threads parsing at once (the API's
# gthread workers reading vector parts) can fail with a spurious "SystemError: AST
# constructor recursion depth mismatch" (python/cpython#106905). One parse at a time.
NPY_HEADERS = threading.Lock()

FORMAT_VERSION = 1
META_NAME = "meta.json"
LOCK_NAME = ".lock"
APPEND = "append"
DELETE = "delete"

_PART_RE = re.compile(r"^part-(\d{6,})\.npz$")
_MODEL_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class VectorStoreError(Exception):
    """The vector store is unreadable or does not match what the caller expects."""


@dataclass(frozen=True)
class Part:
    """One part file. ``vectors`` is ``None`` when read with ``vectors=False`` or a tombstone."""

    seq: int
    path: Path
    kind: str
    ids: np.ndarray
    vectors: np.ndarray | None


class VectorStore:
    """Vectors of one model version under ``root/<model_version>/``.

    ``root`` is ``Settings.vectors_dir``. Nothing is created until the first write.
    """

    def __init__(self, root: Path, model_version: str, dim: int) -> None:
        if not isinstance(model_version, str) or not _MODEL_VERSION_RE.match(model_version):
            raise ValueError(
                f"model_version {model_version!r} must be 1-128 characters of letters, digits "
                "and '._+-', starting with a letter or digit"
            )
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.model_version = model_version
        self.dim = dim
        self.directory = Path(root) / model_version
        self._check_meta()

    # -- writing ---------------------------------------------------------------

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> Path | None:
        """Append vectors (latest wins over earlier parts); return the part written."""
        ids = _check_ids(ids)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape [n, {self.dim}], got {vectors.shape}")
        if len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        if len(ids) == 0:
            return None
        return self._write_part(APPEND, ids, vectors)

    def delete(self, ids: np.ndarray) -> Path | None:
        """Record tombstones for ``ids``; unknown ids are harmless."""
        ids = _check_ids(ids)
        if len(ids) == 0:
            return None
        return self._write_part(DELETE, ids, None)

    # -- reading ---------------------------------------------------------------

    def part_paths(self) -> list[tuple[int, Path]]:
        """Complete part files in write order (temp files and other names skipped)."""
        if not self.directory.is_dir():
            return []
        parts = []
        for entry in self.directory.iterdir():
            match = _PART_RE.match(entry.name)
            if match:
                parts.append((int(match.group(1)), entry))
        return sorted(parts)

    def iter_parts(self, *, vectors: bool = True) -> Iterator[Part]:
        """Parts in write order, validated; ``vectors=False`` reads only the ids."""
        for seq, path in self.part_paths():
            yield self._read_part(seq, path, with_vectors=vectors)

    def load(self, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Live ``(ids, vectors)``: latest part wins per id, tombstones applied; sorted by id.

        ``only``: ids wanted (e.g. a sample for a map); the others are never copied,
        so memory is the result, not the whole store. Ids not live are left out.
        """
        parts, live_ids, live_rows, starts = self._resolve()
        if only is not None:
            wanted = np.isin(live_ids, _check_ids(only))
            live_ids, live_rows = live_ids[wanted], live_rows[wanted]
        out = np.empty((len(live_ids), self.dim), dtype=np.float32)
        if len(live_ids) == 0:
            return live_ids, out
        # Which part each surviving row comes from; copy part by part.
        owner = np.searchsorted(starts, live_rows, side="right") - 1
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(len(parts) + 1))
        for p, part in enumerate(parts):
            dest = order[bounds[p] : bounds[p + 1]]
            if len(dest) == 0:
                continue
            vectors = self._read_part(part.seq, part.path, with_vectors=True).vectors
            out[dest] = vectors[live_rows[dest] - starts[p]]
        return live_ids, out

    def lookup(self) -> VectorLookup:
        """Live vectors by id, memory-mapped from the parts as they are now (a later
        write is not seen: compare :meth:`part_paths` and take a new lookup)."""
        parts, live_ids, live_rows, starts = self._resolve()
        owner = np.searchsorted(starts, live_rows, side="right") - 1
        maps = [map_npz_array(part.path, "vectors", (len(part.ids), self.dim))
                if part.kind == APPEND else None for part in parts]
        return VectorLookup(live_ids, owner.astype(np.int32),
                            live_rows - starts[owner] if len(parts) else live_rows, maps)

    def ids(self) -> np.ndarray:
        """Live ids, sorted, without reading any vector."""
        return self._resolve()[1]

    def count(self) -> int:
        """Number of live ids (reads ids only)."""
        return len(self.ids())

    # -- internals -------------------------------------------------------------

    def _resolve(self) -> tuple[list[Part], np.ndarray, np.ndarray, np.ndarray]:
        """Latest-wins over all parts using ids only.

        Returns the parts, the live ids (sorted), the global row of each live id's
        winning entry, and each part's first global row.
        """
        parts = list(self.iter_parts(vectors=False))
        sizes = np.array([len(p.ids) for p in parts], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(parts) else sizes
        if not len(parts) or sizes.sum() == 0:
            empty = np.empty(0, dtype=np.int64)
            return parts, empty, empty, starts
        all_ids = np.concatenate([p.ids for p in parts])
        alive = np.concatenate([np.full(len(p.ids), p.kind == APPEND, dtype=bool) for p in parts])
        # np.unique on the reversed ids finds each id's *last* occurrence.
        unique_ids, first_in_reversed = np.unique(all_ids[::-1], return_index=True)
        last_rows = len(all_ids) - 1 - first_in_reversed
        keep = alive[last_rows]
        return parts, unique_ids[keep], last_rows[keep], starts

    def _write_part(self, kind: str, ids: np.ndarray, vectors: np.ndarray | None) -> Path:
        with self._lock():
            self._ensure_meta()
            existing = self.part_paths()
            seq = existing[-1][0] + 1 if existing else 1
            path = self.directory / f"part-{seq:06d}.npz"
            arrays = {"kind": np.array(kind), "ids": ids}
            if vectors is not None:
                arrays["vectors"] = vectors
            with atomic_writer(path) as handle:
                np.savez(handle, **arrays)
        log.info(
            "vector store %s: %s part %s (%d ids)", self.model_version, kind, path.name, len(ids)
        )
        return path

    def _read_part(self, seq: int, path: Path, *, with_vectors: bool) -> Part:
        try:
            with NPY_HEADERS, np.load(path, allow_pickle=False) as npz:
                kind = str(npz["kind"])
                ids = npz["ids"]
                vectors = npz["vectors"] if with_vectors and kind == APPEND else None
                has_vectors = "vectors" in npz.files
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise VectorStoreError(f"corrupt vector store part {path}: {exc!r}") from exc
        problem = None
        if kind not in (APPEND, DELETE):
            problem = f"unknown kind {kind!r}"
        elif ids.ndim != 1 or ids.dtype != np.int64:
            problem = f"ids must be 1-D int64, found {ids.dtype} {ids.shape}"
        elif kind == APPEND and not has_vectors:
            problem = "append part without vectors"
        elif vectors is not None and (
            vectors.dtype != np.float32 or vectors.shape != (len(ids), self.dim)
        ):
            expected = f"float32 [{len(ids)}, {self.dim}]"
            problem = f"vectors must be {expected}, found {vectors.dtype} {vectors.shape}"
        if problem:
            raise VectorStoreError(f"corrupt vector store part {path}: {problem}")
        return Part(seq=seq, path=path, kind=kind, ids=ids, vectors=vectors)

    def _check_meta(self) -> None:
        path = self.directory / META_NAME
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise VectorStoreError(f"unreadable vector store metadata {path}: {exc}") from exc
        if meta.get("dim") != self.dim:
            raise VectorStoreError(
                f"vector store {self.directory} holds dimension {meta.get('dim')} vectors, "
                f"opened with dim={self.dim}"
            )
        if meta.get("model_version") != self.model_version:
            raise VectorStoreError(
                f"vector store {self.directory} belongs to model {meta.get('model_version')!r}"
            )

    def _ensure_meta(self) -> None:
        path = self.directory / META_NAME
        if path.exists():
            self._check_meta()
            return
        meta = {"format": FORMAT_VERSION, "model_version": self.model_version, "dim": self.dim}
        atomic_write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@dataclass(frozen=True)
class VectorLookup:
    """Live ids (sorted) with the part and row that hold each one's vector."""

    ids: np.ndarray
    parts: np.ndarray  # index into ``maps`` per id
    rows: np.ndarray  # row in that part per id
    maps: list[np.memmap | None]

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, vector_id: int) -> np.ndarray | None:
        """A copy of the id's vector as ``[1, dim]`` float32, or None if it is not live."""
        position = int(np.searchsorted(self.ids, vector_id))
        if position >= len(self.ids) or self.ids[position] != vector_id:
            return None
        part = self.maps[self.parts[position]]
        row = int(self.rows[position])
        return np.array(part[row : row + 1], dtype=np.float32)


def map_npz_array(path: Path, name: str, shape: tuple[int, ...]) -> np.memmap:
    """``name`` of an uncompressed .npz, memory-mapped read-only where it lies in the file.

    Raises :class:`VectorStoreError` when the member is compressed, missing, or not
    float32 of ``shape`` (the part was validated on read; this checks the mapping).
    """
    member = f"{name}.npy"
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            raise VectorStoreError(f"{path}: {member} is compressed; it cannot be mapped")
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)  # the local file header; its name and extra follow
            if local[:4] != b"PK\x03\x04":
                raise VectorStoreError(f"{path}: no local header for {member}")
            name_length = int.from_bytes(local[26:28], "little")
            extra_length = int.from_bytes(local[28:30], "little")
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            with NPY_HEADERS:
                found_shape, fortran, dtype = header(handle)
            offset = handle.tell()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise VectorStoreError(f"cannot map {member} of vector store part {path}: {exc!r}"
                               ) from exc
    if fortran or dtype != np.float32 or tuple(found_shape) != tuple(shape):
        raise VectorStoreError(f"{path}: {member} is {dtype} {found_shape}, expected "
                               f"float32 {shape}")
    if shape[0] == 0:
        return np.zeros(shape, dtype=np.float32)
    return np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)


def _check_ids(ids: np.ndarray) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)

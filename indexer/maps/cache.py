"""Computed maps on disk, one JSON file per index version, and the "queued" markers.

Layout under ``Settings.home / "maps"``::

    maps/
      20261127T140501.123456Z-9f3a.json     # the map of that index version
      20261127T140501.123456Z-9f3a.queued   # its computation was queued (mtime: when)

A map file is written through a temp file, fsync and rename (``indexer.fsutil``),
so a reader sees a whole map or none. A file that is there but does not parse
or lacks what a map holds (a disk that filled up, a copy cut short) is treated
as absent, logged, and overwritten by the next computation. Two workers
computing the same version each write a whole file; the later rename wins.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.config import Settings
from indexer.fsutil import atomic_write_text
from indexer.index.manifest import is_version_name

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUFFIX = ".json"
QUEUED_SUFFIX = ".queued"
STALE_TEMP_SECONDS = 3600.0  # a temp file this old belongs to a writer that died

REQUIRED = {
    "format": int,
    "index_version": str,
    "model_version": str,
    "computed_at": str,
    "seconds": float,
    "method": str,
    "total": int,
    "sampled": int,
    "clusters": int,
    "points": list,
}
POINT_FIELDS = ("item_id", "x", "y", "cluster", "label", "product_id", "title")


def maps_dir(settings: Settings) -> Path:
    return settings.home / "maps"


def map_path(settings: Settings, version: str) -> Path:
    if not is_version_name(version):
        raise ValueError(f"{version!r} is not an index version name")
    return maps_dir(settings) / f"{version}{SUFFIX}"


def check_map(data: Any) -> str | None:
    """What is wrong with a parsed map file, or ``None`` when it is whole."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, kind in REQUIRED.items():
        value = data.get(key)
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key!r} missing or not {kind.__name__}"
    if data["format"] != FORMAT_VERSION:
        return f"format {data['format']}, expected {FORMAT_VERSION}"
    points = data["points"]
    if len(points) != data["sampled"]:
        return f"{len(points)} points, the header says {data['sampled']}"
    if points and not all(isinstance(p, dict) and all(f in p for f in POINT_FIELDS)
                          for p in points):  # fmt: skip
        return "a point lacks one of " + ", ".join(POINT_FIELDS)
    return None


def load_map(settings: Settings, version: str) -> dict | None:
    """The cached map of ``version``, or ``None`` when absent or not whole (logged)."""
    path = map_path(settings, version)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable map %s (%s); it will be computed again", path, exc)
        return None
    problem = check_map(data)
    if problem is None and data["index_version"] != version:
        problem = f"it holds index version {data['index_version']}"
    if problem is not None:
        log.warning("ignoring incomplete map %s (%s); it will be computed again", path, problem)
        return None
    return data


def cached_versions(settings: Settings) -> list[str]:
    """Index versions with a map file (whole or not), oldest first."""
    folder = maps_dir(settings)
    if not folder.is_dir():
        return []
    names = (entry.name[: -len(SUFFIX)] for entry in folder.iterdir()
             if entry.name.endswith(SUFFIX))  # fmt: skip
    return sorted(name for name in names if is_version_name(name))


def latest_map(
    settings: Settings,
    *,
    besides: str | None = None,
    load: Callable[[Settings, str], dict | None] = load_map,
) -> dict | None:
    """The newest whole map of any version other than ``besides`` (a stale fallback).

    ``load`` reads one version's map: :func:`load_map`, or a caller's caching reader.
    """
    for version in reversed(cached_versions(settings)):
        if version == besides:
            continue
        data = load(settings, version)
        if data is not None:
            return data
    return None


def save_map(settings: Settings, data: dict, *, keep: int | None = None) -> Path:
    """Write a map atomically, then keep only the ``keep`` newest (default: index's)."""
    problem = check_map(data)
    if problem is not None:
        raise ValueError(f"not a whole map: {problem}")
    path = map_path(settings, data["index_version"])
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    with contextlib.suppress(FileNotFoundError):
        (path.with_suffix(QUEUED_SUFFIX)).unlink()
    prune_maps(settings, keep if keep is not None else settings.index_keep_versions)
    return path


def prune_maps(settings: Settings, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest versions' maps, their markers, old temp files."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    folder = maps_dir(settings)
    doomed = cached_versions(settings)[:-keep]
    for version in doomed:
        for suffix in (SUFFIX, QUEUED_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{version}{suffix}").unlink()
        log.info("pruned the map of index version %s", version)
    oldest_kept = min(cached_versions(settings), default="")
    now = time.time()
    for entry in folder.iterdir() if folder.is_dir() else ():
        name = entry.name
        try:
            if name.startswith(".") and name.endswith(".tmp"):
                if now - entry.stat().st_mtime > STALE_TEMP_SECONDS:
                    entry.unlink()
            elif name.endswith(QUEUED_SUFFIX) and name[: -len(QUEUED_SUFFIX)] < oldest_kept:
                entry.unlink()  # a marker of a version older than every kept map
        except FileNotFoundError:
            pass
    return doomed


def claim_queue_slot(settings: Settings, version: str, *, now: float | None = None) -> bool:
    """Whether the caller should queue ``version``'s map now; records that it does.

    True at most once per ``settings.map_requeue_after`` seconds per version, so
    page reloads while a map is computed do not flood the queue; after that
    time a computation whose worker died may be queued again.
    """
    marker = map_path(settings, version).with_suffix(QUEUED_SUFFIX)
    marker.parent.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            age = now - marker.stat().st_mtime
        except FileNotFoundError:  # the map was saved meanwhile
            return False
        if age < settings.map_requeue_after:
            return False
        os.utime(marker, (now, now))  # two racing requests may both send: harmless
        return True
    os.close(fd)
    os.utime(marker, (now, now))
    return True


def release_queue_slot(settings: Settings, version: str) -> None:
    """Forget a claim whose message could not be sent, so the next request tries again."""
    with contextlib.suppress(FileNotFoundError):
        map_path(settings, version).with_suffix(QUEUED_SUFFIX).unlink()

"""The manifest of an index version: what is in it and how to check it.

A version directory is complete only once its ``manifest.json`` exists; the
manifest is written last and atomically, so a crash while writing shards leaves a
directory without one, which readers ignore. The manifest records each shard
file's size and sha256, so a truncated or altered shard is refused at load time
instead of being served as a smaller (or empty) index.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.fsutil import atomic_write_text
from indexer.index.errors import IndexLoadError

FORMAT_VERSION = 1
METRIC = "inner_product"
MANIFEST_NAME = "manifest.json"

# Sortable by name: UTC time down to microseconds, then random hex against clashes.
_VERSION_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{4}$")


def new_version_name(now: datetime | None = None) -> str:
    """A fresh version name such as ``20261127T140501.123456Z-9f3a``."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}-{secrets.token_hex(2)}"


def is_version_name(name: str) -> bool:
    return bool(_VERSION_RE.match(name))


def shard_filename(shard: int) -> str:
    return f"shard-{shard:02d}.faiss"


@dataclass(frozen=True)
class ShardEntry:
    """One shard file: its name inside the version directory, vector count and checksum."""

    file: str
    count: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to verify and search an index version."""

    version: str
    model_version: str
    dim: int
    factory: str
    index_type: str
    nlist: int
    default_nprobe: int
    nprobe_rule: str
    n_shards: int
    shards: tuple[ShardEntry, ...]
    created: str
    parent: str | None = None
    metric: str = METRIC
    format_version: int = FORMAT_VERSION

    @property
    def total(self) -> int:
        return sum(entry.count for entry in self.shards)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shards"] = [asdict(entry) for entry in self.shards]
        data["total"] = self.total
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse and check a manifest; raises ``ValueError``/``KeyError``/``TypeError``."""
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"unsupported manifest format_version {data.get('format_version')!r} "
                f"(this code reads {FORMAT_VERSION})"
            )
        if data.get("metric") != METRIC:
            raise ValueError(f"unsupported metric {data.get('metric')!r} (expected {METRIC!r})")
        shards = tuple(
            ShardEntry(
                file=str(s["file"]),
                count=int(s["count"]),
                bytes=int(s["bytes"]),
                sha256=str(s["sha256"]),
            )
            for s in data["shards"]
        )
        manifest = cls(
            version=str(data["version"]),
            model_version=str(data["model_version"]),
            dim=int(data["dim"]),
            factory=str(data["factory"]),
            index_type=str(data["index_type"]),
            nlist=int(data["nlist"]),
            default_nprobe=int(data["default_nprobe"]),
            nprobe_rule=str(data.get("nprobe_rule", "")),
            n_shards=int(data["n_shards"]),
            shards=shards,
            created=str(data["created"]),
            parent=data.get("parent"),
        )
        if len(shards) != manifest.n_shards:
            raise ValueError(f"n_shards is {manifest.n_shards} but {len(shards)} shards are listed")
        for entry in shards:
            if "/" in entry.file or entry.file.startswith("."):
                raise ValueError(f"shard file name {entry.file!r} is not a plain file name")
        if "total" in data and int(data["total"]) != manifest.total:
            raise ValueError(f"total {data['total']} != sum of shard counts {manifest.total}")
        return manifest


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_manifest(version_dir: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically; call it only after every shard is durable."""
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write_text(version_dir / MANIFEST_NAME, text)


def read_manifest(version_dir: Path) -> Manifest:
    """Read and validate a version's manifest, or raise :class:`IndexLoadError`."""
    path = version_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexLoadError(
            f"index version {version_dir.name!r} has no {MANIFEST_NAME} "
            "(incomplete or not an index version)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexLoadError(f"unreadable manifest {path}: {exc}") from exc
    try:
        manifest = Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexLoadError(f"invalid manifest {path}: {exc!r}") from exc
    if manifest.version != version_dir.name:
        raise IndexLoadError(
            f"manifest {path} names version {manifest.version!r}, "
            f"but lies in directory {version_dir.name!r}"
        )
    return manifest

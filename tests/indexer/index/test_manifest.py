"""Version names sort by creation time; manifests round-trip and reject damage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from indexer.index.errors import IndexLoadError
from indexer.index.manifest import (
    Manifest,
    ShardEntry,
    is_version_name,
    new_version_name,
    read_manifest,
    write_manifest,
)


def _manifest(version: str) -> Manifest:
    return Manifest(
        version=version,
        model_version="m1",
        dim=8,
        factory="IDMap2,Flat",
        index_type="flat",
        nlist=0,
        default_nprobe=0,
        nprobe_rule="exact",
        n_shards=2,
        shards=(
            ShardEntry("shard-00.faiss", 3, 100, "a" * 64),
            ShardEntry("shard-01.faiss", 4, 120, "b" * 64),
        ),
        created="2026-11-27T14:05:01.000000Z",
    )


def test_version_names_are_valid_and_sort_by_time():
    start = datetime(2026, 11, 27, 14, 5, 1, tzinfo=UTC)
    names = [new_version_name(start + timedelta(microseconds=i)) for i in (0, 1, 999_999, 10**6)]
    assert all(is_version_name(name) for name in names)
    assert names == sorted(names)
    assert names[0].startswith("20261127T140501.000000Z-")
    assert not is_version_name("../etc")


def test_manifest_round_trips_with_total(tmp_path):
    directory = tmp_path / _manifest("x").version
    version = new_version_name()
    directory = tmp_path / version
    directory.mkdir()
    write_manifest(directory, _manifest(version))
    data = json.loads((directory / "manifest.json").read_text())
    assert data["total"] == 7 and data["metric"] == "inner_product" and data["format_version"] == 1
    assert read_manifest(directory) == _manifest(version)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(total=99),
        lambda d: d.update(metric="l2"),
        lambda d: d.update(format_version=99),
        lambda d: d.update(n_shards=3),
        lambda d: d.pop("dim"),
        lambda d: d["shards"][0].update(file="../evil"),
    ],
)
def test_damaged_manifest_is_refused(tmp_path, damage):
    version = new_version_name()
    directory = tmp_path / version
    directory.mkdir()
    write_manifest(directory, _manifest(version))
    data = json.loads((directory / "manifest.json").read_text())
    damage(data)
    (directory / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexLoadError, match="manifest"):
        read_manifest(directory)


def test_missing_or_garbled_manifest_is_refused(tmp_path):
    directory = tmp_path / new_version_name()
    directory.mkdir()
    with pytest.raises(IndexLoadError, match="no manifest.json"):
        read_manifest(directory)
    (directory / "manifest.json").write_text('{"version": ')
    with pytest.raises(IndexLoadError, match="unreadable manifest"):
        read_manifest(directory)

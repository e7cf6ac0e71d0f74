"""indexer.sources.folder: labels from sub-folders, sorted walk, what is offered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from indexer.sources import IMAGE_EXTENSIONS, SourceRecord, iter_folder


def touch(root: Path, relative: str, data: bytes = b"x") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_flat_folder_uses_file_stems(tmp_path):
    touch(tmp_path, "b.png")
    touch(tmp_path, "a.jpg")
    records = list(iter_folder(tmp_path))
    assert [(r.path.name, r.label, r.product_id) for r in records] == [
        ("a.jpg", None, "a"),
        ("b.png", None, "b"),
    ]
    assert records[0].url is None
    assert records[0].source_url == (tmp_path / "a.jpg").resolve().as_uri()


def test_sub_folders_are_labels_and_products(tmp_path):
    touch(tmp_path, "shoes/2.jpg")
    touch(tmp_path, "shoes/1.jpg")
    touch(tmp_path, "bags/x.webp")
    touch(tmp_path, "deep/er/still.gif")
    touch(tmp_path, "top.bmp")
    records = list(iter_folder(tmp_path))
    assert [
        (r.path.relative_to(tmp_path.resolve()).as_posix(), r.label, r.product_id) for r in records
    ] == [
        ("top.bmp", None, "top"),
        ("bags/x.webp", "bags", "bags"),
        ("deep/er/still.gif", "er", "er"),
        ("shoes/1.jpg", "shoes", "shoes"),
        ("shoes/2.jpg", "shoes", "shoes"),
    ]


def test_product_id_from_stem(tmp_path):
    touch(tmp_path, "shoes/1.jpg")
    (record,) = iter_folder(tmp_path, product_id_from="stem")
    assert (record.label, record.product_id) == ("shoes", "1")
    with pytest.raises(ValueError, match="'folder' or 'stem'"):
        list(iter_folder(tmp_path, product_id_from="name"))


def test_hidden_and_non_image_files_are_skipped(tmp_path, caplog):
    touch(tmp_path, ".hidden.jpg")
    touch(tmp_path, ".git/objects/a.jpg")
    touch(tmp_path, ".DS_Store")
    touch(tmp_path, "notes.txt")
    touch(tmp_path, "data.csv")
    touch(tmp_path, "meta.json")
    touch(tmp_path, "README.md")
    touch(tmp_path, "noext")
    touch(tmp_path, "keep.JPG")
    with caplog.at_level(logging.INFO, logger="indexer.sources.folder"):
        records = list(iter_folder(tmp_path))
    assert [r.path.name for r in records] == ["keep.JPG"]
    assert "skipped 5 non-image files" in caplog.text


def test_refused_image_formats_are_still_offered(tmp_path):
    """The loader decides; refusals get recorded with a reason instead of vanishing."""
    for name in ["a.eps", "b.psd", "c.tiff", "d.heic", "e.avif", "f.svg"]:
        touch(tmp_path, name)
    assert [r.path.name for r in iter_folder(tmp_path)] == [
        "a.eps",
        "b.psd",
        "c.tiff",
        "d.heic",
        "e.avif",
        "f.svg",
    ]
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"} <= IMAGE_EXTENSIONS


def test_symlinked_files_are_followed_but_not_directory_loops(tmp_path):
    real = touch(tmp_path / "elsewhere", "real.jpg")
    root = tmp_path / "root"
    (root / "loop").mkdir(parents=True)
    (root / "loop" / "back").symlink_to(root, target_is_directory=True)
    (root / "link.jpg").symlink_to(real)
    assert [r.path.name for r in iter_folder(root)] == ["link.jpg"]


def test_missing_folder(tmp_path):
    with pytest.raises(NotADirectoryError):
        list(iter_folder(tmp_path / "nope"))


def test_record_needs_exactly_one_location(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        SourceRecord(path=None, url=None)
    with pytest.raises(ValueError, match="exactly one"):
        SourceRecord(path=tmp_path, url="https://x.example/a.jpg")

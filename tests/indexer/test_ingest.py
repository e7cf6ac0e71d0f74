"""indexer.ingest end to end: folders and manifests into stored files and catalog rows."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import images_factory as factory
import pytest
from PIL import Image

from indexer.blobs import BlobStore
from indexer.catalog import Catalog
from indexer.config import Settings
from indexer.images import content_id
from indexer.ingest import FileTooLarge, IngestReport, ingest, read_limited


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_catalogue(root: Path, count: int, *, corrupt_index: int | None = None) -> dict[str, bytes]:
    """``count`` images over five product folders; the corrupt one is a truncated JPEG."""
    files: dict[str, bytes] = {}
    formats = ["JPEG", "PNG", "WEBP", "GIF", "BMP"]
    for i in range(count):
        name = f"product{i % 5}/img{i:03d}"
        if i == corrupt_index:
            name, data = f"{name}.jpg", factory.truncated_jpeg_bytes()
        else:
            fmt = formats[i % len(formats)]
            data = factory.image_bytes(fmt, seed=i, size=(48 + i, 40))
            name = f"{name}.{ {'JPEG': 'jpg'}.get(fmt, fmt.lower()) }"
        write(root / name, data)
        files[name] = data
    return files


def snapshot(settings: Settings) -> dict[Path, tuple[int, bytes]]:
    return {
        path: (path.stat().st_mtime_ns, path.read_bytes())
        for base in (settings.images_dir, settings.thumbnails_dir)
        for path in sorted(base.rglob("*"))
        if path.is_file()
    }


def test_folder_of_50_with_one_corrupt(tmp_path, settings, catalog):
    source = tmp_path / "catalogue"
    files = make_catalogue(source, 50, corrupt_index=17)

    report = ingest(source, settings, catalog=catalog, workers=3)

    bad = (source / "product2/img017.jpg").resolve()
    assert report.added == 49 and report.duplicates == 0 and report.pending_urls == 0
    assert report.failed == [(bad.as_uri(), "truncated image data")]
    assert catalog.counts() == {"stored": 49, "embedded": 0, "indexed": 0, "failed": 1}
    (failure,) = catalog.failures()
    assert failure.id == content_id(files["product2/img017.jpg"])
    assert (failure.source_url, failure.error) == (bad.as_uri(), "truncated image data")

    images = BlobStore.for_images(settings)
    thumbs = BlobStore.for_thumbnails(settings)
    for name, data in files.items():
        if name == "product2/img017.jpg":
            continue
        item = catalog.get(content_id(data))
        assert item is not None and item.status == "stored", name
        assert images.resolve(item.stored_path).read_bytes() == data
        assert Path(item.stored_path).suffix == Path(name).suffix
        assert item.label == item.product_id == name.split("/")[0]
        assert item.size_bytes == len(data)
        assert (item.width, item.height) == Image.open(io.BytesIO(data)).size
        thumb = Image.open(thumbs.resolve(item.thumbnail_path))
        assert thumb.format == "JPEG" and max(thumb.size) <= settings.thumbnail_size
        assert item.source == str(source.resolve())


def test_re_ingest_is_a_no_op(tmp_path, settings, catalog):
    source = tmp_path / "catalogue"
    make_catalogue(source, 12, corrupt_index=3)
    first = ingest(source, settings, catalog=catalog)
    rows = {i.id: i for i in catalog.iter_items_with_status("stored")}
    files = snapshot(settings)

    second = ingest(source, settings, catalog=catalog)

    assert (first.added, second.added) == (11, 0)
    assert second.duplicates == 11
    assert second.failed == first.failed  # still bad, still reported, not duplicated
    assert catalog.counts() == {"stored": 11, "embedded": 0, "indexed": 0, "failed": 1}
    assert {i.id: i for i in catalog.iter_items_with_status("stored")} == rows
    assert snapshot(settings) == files


def test_nothing_stored_is_lost_when_bad_files_arrive_later(tmp_path, settings, catalog):
    source = tmp_path / "catalogue"
    make_catalogue(source, 10)
    assert ingest(source, settings, catalog=catalog).added == 10
    before = snapshot(settings)
    write(source / "product0/broken.png", factory.truncated_png_bytes())
    write(source / "product0/bomb.png", factory.png_bomb_bytes())
    report = ingest(source, settings, catalog=catalog)
    assert (report.added, report.duplicates, len(report.failed)) == (0, 10, 2)
    assert catalog.counts()["stored"] == 10
    assert snapshot(settings) == before


def test_every_kind_of_bad_input_is_recorded_with_a_reason(tmp_path, settings, catalog):
    source = tmp_path / "bad"
    inputs = {
        "a_empty.jpg": b"",
        "b_text.jpg": factory.text_bytes(),
        "c_drawing.eps": factory.eps_bytes(),
        "d_layers.psd": factory.psd_bytes(),
        "e_truncated.jpg": factory.truncated_jpeg_bytes(),
        "f_truncated.png": factory.truncated_png_bytes(),
        "g_bomb.png": factory.png_bomb_bytes(),
        "h_good_cmyk.jpg": factory.cmyk_jpeg_bytes(),
        "i_good_16bit.png": factory.png16_bytes(),
        "j_good_rotated.jpg": factory.exif_rotated_jpeg_bytes(),
    }
    for name, data in inputs.items():
        write(source / name, data)

    report = ingest(source, settings, catalog=catalog)

    reasons = {Path(url).name: reason for url, reason in report.failed}
    assert reasons == {
        "a_empty.jpg": "empty file",
        "b_text.jpg": "not an image: unrecognised format",
        "c_drawing.eps": "format EPS not allowed (allowed: JPEG, PNG, WEBP, GIF, BMP)",
        "d_layers.psd": "format PSD not allowed (allowed: JPEG, PNG, WEBP, GIF, BMP)",
        "e_truncated.jpg": "truncated image data",
        "f_truncated.png": "truncated image data",
        "g_bomb.png": "image too large: 900000000 pixels exceeds limit 40000000",
    }
    assert report.added == 3
    assert {f.error for f in catalog.failures()} == set(reasons.values())
    rotated = catalog.get(content_id(inputs["j_good_rotated.jpg"]))
    assert (rotated.width, rotated.height) == (40, 80)


def test_file_over_the_byte_limit_is_not_read_into_memory(tmp_path, settings, catalog):
    small = settings.model_copy(update={"max_image_bytes": 10_000})
    data = factory.png_bytes(seed=1, size=(200, 200))
    assert len(data) > 10_000
    path = write(tmp_path / "src" / "big.png", data)
    with pytest.raises(FileTooLarge, match="exceeds 10000 bytes limit") as info:
        read_limited(path, 10_000)
    assert info.value.size == len(data)

    report = ingest(path.parent, small, catalog=catalog)

    assert report.failed == [
        (path.resolve().as_uri(), f"file too large: {len(data)} bytes exceeds 10000 bytes limit")
    ]
    failure = catalog.get(hashlib.sha256(data).hexdigest())  # still the content's id
    assert failure.status == "failed" and failure.size_bytes == len(data)


def test_duplicates_within_one_run(tmp_path, settings, catalog):
    data = factory.jpeg_bytes(seed=3)
    write(tmp_path / "src/a/one.jpg", data)
    write(tmp_path / "src/b/two.jpg", data)
    report = ingest(tmp_path / "src", settings, catalog=catalog, workers=2)
    assert (report.added, report.duplicates) == (1, 1)
    assert catalog.get(content_id(data)).label == "a"  # the first one (sorted) wins


def test_missing_stored_file_is_restored(tmp_path, settings, catalog):
    data = factory.jpeg_bytes(seed=4)
    write(tmp_path / "src/x.jpg", data)
    ingest(tmp_path / "src", settings, catalog=catalog)
    item = catalog.get(content_id(data))
    images = BlobStore.for_images(settings)
    images.resolve(item.stored_path).unlink()
    report = ingest(tmp_path / "src", settings, catalog=catalog)
    assert report.duplicates == 1
    assert images.resolve(item.stored_path).read_bytes() == data


def write_manifests(root: Path) -> tuple[Path, Path]:
    write(root / "imgs/a.jpg", factory.jpeg_bytes(seed=10))
    write(root / "imgs/b.png", factory.png_bytes(seed=11))
    csv_path = root / "catalogue.csv"
    csv_path.write_text(
        "product_id,path,image_url,label,title,url\n"
        "p1,imgs/a.jpg,,shoes,Red shoe,https://shop.example/p1\n"
        "p2,,https://img.example/b.jpg,bags,Bag,https://shop.example/p2\n"
        "p3,imgs/missing.jpg,,,,\n"
        "p4,,https://img.example/c.jpg,,,\n",
        encoding="utf-8",
    )
    jsonl_path = root / "catalogue.jsonl"
    rows = [
        {"product_id": "p5", "path": "imgs/b.png", "label": "hats", "title": "Hat"},
        {"product_id": "p6", "image_url": "https://img.example/d.webp"},
    ]
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return csv_path, jsonl_path


def test_csv_manifest_with_paths_and_urls(tmp_path, settings, catalog):
    csv_path, _ = write_manifests(tmp_path)

    report = ingest(csv_path, settings, catalog=catalog)

    missing = (tmp_path / "imgs/missing.jpg").resolve().as_uri()
    assert report.added == 1 and report.pending_urls == 2
    assert report.failed == [(missing, "unreadable file: No such file or directory")]
    item = catalog.get(content_id((tmp_path / "imgs/a.jpg").read_bytes()))
    assert (item.product_id, item.label, item.title, item.page_url) == (
        "p1",
        "shoes",
        "Red shoe",
        "https://shop.example/p1",
    )
    pending = catalog.pending_fetches()
    assert [(f.url, f.product_id, f.label, f.source) for f in pending] == [
        ("https://img.example/b.jpg", "p2", "bags", str(csv_path.resolve())),
        ("https://img.example/c.jpg", "p4", None, str(csv_path.resolve())),
    ]
    assert pending[0].page_url == "https://shop.example/p2" and pending[0].title == "Bag"

    again = ingest(csv_path, settings, catalog=catalog)
    assert (again.added, again.duplicates, again.pending_urls) == (0, 1, 2)
    assert len(catalog.pending_fetches()) == 2

    # once the fetcher has dealt with the URLs, a re-run reports them as such
    catalog.mark_fetch_done(pending[0].id, item.id)
    catalog.mark_fetch_failed(pending[1].id, "HTTP 404")
    third = ingest(csv_path, settings, catalog=catalog)
    assert (third.added, third.duplicates, third.pending_urls) == (0, 2, 0)
    assert ("https://img.example/c.jpg", "HTTP 404") in third.failed
    assert third.total == 4


def test_jsonl_manifest_with_paths_and_urls(tmp_path, settings, catalog):
    _, jsonl_path = write_manifests(tmp_path)
    report = ingest(jsonl_path, settings, catalog=catalog)
    assert (report.added, report.pending_urls, report.failed) == (1, 1, [])
    item = catalog.get(content_id((tmp_path / "imgs/b.png").read_bytes()))
    assert (item.product_id, item.label, item.title) == ("p5", "hats", "Hat")
    assert [f.url for f in catalog.pending_fetches()] == ["https://img.example/d.webp"]


def test_bad_manifest_stops_before_anything_is_ingested(tmp_path, settings, catalog):
    write(tmp_path / "a.jpg", factory.jpeg_bytes())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.jpg"}\n{"path": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        ingest(manifest, settings, catalog=catalog)
    assert sum(catalog.counts().values()) == 0


def test_single_image_file_and_unknown_sources(tmp_path, settings, catalog):
    path = write(tmp_path / "one.webp", factory.webp_bytes())
    assert ingest(path, settings, catalog=catalog).added == 1
    with pytest.raises(ValueError, match="not a folder, a manifest"):
        ingest(write(tmp_path / "notes.txt", b"hi"), settings, catalog=catalog)


def test_default_catalog_from_settings_and_progress_on_stderr(tmp_path, settings, capsys):
    make_catalogue(tmp_path / "src", 3)
    report = ingest(tmp_path / "src", settings, progress=True)
    assert isinstance(report, IngestReport) and report.added == 3 and report.total == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ingest" in captured.err
    with Catalog(settings) as catalog:
        assert catalog.counts()["stored"] == 3


def test_serial_and_parallel_runs_agree(tmp_path):
    make_catalogue(tmp_path / "src", 15, corrupt_index=4)
    results = []
    for workers in (1, 4):
        settings = Settings(home=tmp_path / f"home{workers}", database_url=None, _env_file=None)
        with Catalog(settings) as catalog:
            report = ingest(tmp_path / "src", settings, catalog=catalog, workers=workers)
            items = {
                i.id: (i.stored_path, i.width, i.height)
                for i in catalog.iter_items_with_status("stored")
            }
        results.append((report.added, report.failed, items))
    assert results[0] == results[1]

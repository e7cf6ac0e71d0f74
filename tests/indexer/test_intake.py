"""indexer.intake: folders, manifests and URLs into stored files and catalog rows.

Each source goes in as a job's entries taken in by the fetch stage, the one path
every caller uses (workers, ``lookalike ingest``, the API's uploads); nothing here
embeds, so no model is loaded. URL rows are served by a local HTTP server.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import images_factory as factory
import pytest
from local_http import LocalServer
from PIL import Image

from indexer import intake as intake_module
from indexer import jobs
from indexer.blobs import BlobStore
from indexer.catalog import Catalog
from indexer.config import Settings
from indexer.images import content_id
from indexer.intake import FileTooLarge, Intake, read_limited


@pytest.fixture
def catalog(catalog_url):
    cat = Catalog.open(catalog_url)
    yield cat
    cat.close()


@pytest.fixture
def shop():
    with LocalServer() as server:
        yield server


def local_fetch(settings: Settings) -> Settings:
    """Settings whose fetcher may reach the loopback server, at once, without robots.txt."""
    return settings.model_copy(update={
        "fetch_allow_networks": ["127.0.0.0/8"], "fetch_per_host_interval": 0,
        "fetch_respect_robots": False, "fetch_retries": 0,
    })  # fmt: skip


def take_in(source: Path, settings: Settings, catalog: Catalog, *, threads: int = 1):
    """Submit ``source`` as a job and run its fetch stage: ``(progress, new items)``."""
    job = jobs.submit_source(catalog, settings, source, register=False)
    intake = Intake.from_settings(settings, catalog)
    added = 0
    for chunk in jobs.start_job(catalog, job.id):
        added += jobs.fetch_chunk(intake, job.id, chunk, threads=threads).added
    return jobs.progress(catalog, job.id), added


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

    state, added = take_in(source, settings, catalog, threads=3)

    bad = (source / "product2/img017.jpg").resolve()
    assert added == 49 and state.fetches == {"pending": 0, "done": 49, "failed": 1}
    assert state.failures == [(str(bad), "truncated image data")]
    assert catalog.counts() == {
        "stored": 49, "embedded": 0, "indexed": 0, "failed": 1, "deleted": 0,
    }
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
        assert item.source_url == (source / name).resolve().as_uri()


def test_taking_the_same_source_in_again_adds_nothing(tmp_path, settings, catalog):
    source = tmp_path / "catalogue"
    make_catalogue(source, 12, corrupt_index=3)
    first, first_added = take_in(source, settings, catalog)
    rows = {i.id: i for i in catalog.iter_items_with_status("stored")}
    files = snapshot(settings)

    second, second_added = take_in(source, settings, catalog)

    assert (first_added, second_added) == (11, 0)
    assert second.fetches["done"] == 11
    assert second.failures == first.failures  # still bad, still reported, not duplicated
    assert catalog.counts() == {
        "stored": 11, "embedded": 0, "indexed": 0, "failed": 1, "deleted": 0,
    }
    assert {i.id: i for i in catalog.iter_items_with_status("stored")} == rows
    assert snapshot(settings) == files


def test_nothing_stored_is_lost_when_bad_files_arrive_later(tmp_path, settings, catalog):
    source = tmp_path / "catalogue"
    make_catalogue(source, 10)
    assert take_in(source, settings, catalog)[1] == 10
    before = snapshot(settings)
    write(source / "product0/broken.png", factory.truncated_png_bytes())
    write(source / "product0/bomb.png", factory.png_bomb_bytes())
    state, added = take_in(source, settings, catalog)
    assert (added, state.fetches["done"], state.fetches["failed"]) == (0, 10, 2)
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

    state, added = take_in(source, settings, catalog)

    reasons = {Path(location).name: reason for location, reason in state.failures}
    assert reasons == {
        "a_empty.jpg": "empty file",
        "b_text.jpg": "not an image: unrecognised format",
        "c_drawing.eps": "format EPS not allowed (allowed: JPEG, PNG, WEBP, GIF, BMP)",
        "d_layers.psd": "format PSD not allowed (allowed: JPEG, PNG, WEBP, GIF, BMP)",
        "e_truncated.jpg": "truncated image data",
        "f_truncated.png": "truncated image data",
        "g_bomb.png": "image too large: 900000000 pixels exceeds limit 40000000",
    }
    assert added == 3
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

    state, _ = take_in(path.parent, small, catalog)

    assert state.failures == [
        (str(path.resolve()), f"file too large: {len(data)} bytes exceeds 10000 bytes limit")
    ]
    failure = catalog.get(hashlib.sha256(data).hexdigest())  # still the content's id
    assert failure.status == "failed" and failure.size_bytes == len(data)


def test_an_unreadable_file_is_recorded_with_its_reason(tmp_path, settings, catalog):
    path = write(tmp_path / "src" / "locked.jpg", factory.jpeg_bytes(seed=2))
    job = jobs.submit_source(catalog, settings, path.parent, register=False)
    path.unlink()  # listed, then gone before it was read
    intake = Intake.from_settings(settings, catalog)
    report = jobs.fetch_chunk(intake, job.id, 0)
    assert (report.done, report.failed) == (0, 1)
    failures = jobs.progress(catalog, job.id).failures
    assert failures == [(str(path.resolve()), "unreadable file: No such file or directory")]
    assert sum(catalog.counts().values()) == 0  # no bytes, no content id: no item row


def test_duplicates_within_one_run(tmp_path, settings, catalog):
    data = factory.jpeg_bytes(seed=3)
    write(tmp_path / "src/a/one.jpg", data)
    write(tmp_path / "src/b/two.jpg", data)
    state, added = take_in(tmp_path / "src", settings, catalog, threads=2)
    assert (added, state.fetches["done"]) == (1, 2)
    assert catalog.get(content_id(data)).label == "a"  # the first one (sorted) wins


def test_missing_stored_file_is_restored(tmp_path, settings, catalog):
    data = factory.jpeg_bytes(seed=4)
    write(tmp_path / "src/x.jpg", data)
    take_in(tmp_path / "src", settings, catalog)
    item = catalog.get(content_id(data))
    images = BlobStore.for_images(settings)
    images.resolve(item.stored_path).unlink()
    state, added = take_in(tmp_path / "src", settings, catalog)
    assert (added, state.fetches["done"]) == (0, 1)
    assert images.resolve(item.stored_path).read_bytes() == data


def write_manifests(root: Path, shop: LocalServer) -> tuple[Path, Path]:
    write(root / "imgs/a.jpg", factory.jpeg_bytes(seed=10))
    write(root / "imgs/b.png", factory.png_bytes(seed=11))
    shop.serve("/b.jpg", factory.jpeg_bytes(seed=12))
    shop.serve("/d.webp", factory.webp_bytes())
    csv_path = root / "catalogue.csv"
    csv_path.write_text(
        "product_id,path,image_url,label,title,url\n"
        "p1,imgs/a.jpg,,shoes,Red shoe,https://shop.example/p1\n"
        f"p2,,{shop.url('/b.jpg')},bags,Bag,https://shop.example/p2\n"
        "p3,imgs/missing.jpg,,,,\n"
        f"p4,,{shop.url('/c.jpg')},,,\n",
        encoding="utf-8",
    )
    jsonl_path = root / "catalogue.jsonl"
    rows = [
        {"product_id": "p5", "path": "imgs/b.png", "label": "hats", "title": "Hat"},
        {"product_id": "p6", "image_url": shop.url("/d.webp")},
    ]
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return csv_path, jsonl_path


def test_csv_manifest_with_paths_and_urls_downloads_the_urls(tmp_path, settings, catalog, shop):
    settings = local_fetch(settings)
    csv_path, _ = write_manifests(tmp_path, shop)

    state, added = take_in(csv_path, settings, catalog)

    missing = str((tmp_path / "imgs/missing.jpg").resolve())
    assert added == 2 and state.fetches == {"pending": 0, "done": 2, "failed": 2}
    assert state.failures == [
        (missing, "unreadable file: No such file or directory"),
        (shop.url("/c.jpg"), "HTTP 404"),
    ]
    item = catalog.get(content_id((tmp_path / "imgs/a.jpg").read_bytes()))
    assert (item.product_id, item.label, item.title, item.page_url) == (
        "p1", "shoes", "Red shoe", "https://shop.example/p1")  # fmt: skip
    fetched = catalog.get(content_id(factory.jpeg_bytes(seed=12)))
    assert (fetched.product_id, fetched.label, fetched.title, fetched.page_url) == (
        "p2", "bags", "Bag", "https://shop.example/p2")  # fmt: skip
    assert (fetched.status, fetched.source_url, fetched.source) == (
        "stored", shop.url("/b.jpg"), str(csv_path.resolve()))  # fmt: skip

    again, added_again = take_in(csv_path, settings, catalog)
    assert (added_again, again.fetches["done"], len(again.failures)) == (0, 2, 2)
    assert catalog.counts()["stored"] == 2


def test_jsonl_manifest_with_paths_and_urls(tmp_path, settings, catalog, shop):
    _, jsonl_path = write_manifests(tmp_path, shop)
    state, added = take_in(jsonl_path, local_fetch(settings), catalog)
    assert (added, state.failures) == (2, [])
    item = catalog.get(content_id((tmp_path / "imgs/b.png").read_bytes()))
    assert (item.product_id, item.label, item.title) == ("p5", "hats", "Hat")
    assert catalog.get(content_id(factory.webp_bytes())).product_id == "p6"


def test_bad_manifest_stops_before_anything_is_taken_in(tmp_path, settings, catalog):
    write(tmp_path / "a.jpg", factory.jpeg_bytes())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"path": "a.jpg"}\n{"path": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        take_in(manifest, settings, catalog)
    assert sum(catalog.counts().values()) == 0 and catalog.jobs() == []


def test_single_image_file_and_unknown_sources(tmp_path, settings, catalog):
    path = write(tmp_path / "one.webp", factory.webp_bytes())
    assert take_in(path, settings, catalog)[1] == 1
    with pytest.raises(ValueError, match="not a folder, a manifest"):
        take_in(write(tmp_path / "notes.txt", b"hi"), settings, catalog)


def test_serial_and_parallel_runs_agree(tmp_path):
    make_catalogue(tmp_path / "src", 15, corrupt_index=4)
    results = []
    for threads in (1, 4):
        settings = Settings(home=tmp_path / f"home{threads}", database_url=None, _env_file=None)
        with Catalog(settings) as catalog:
            state, added = take_in(tmp_path / "src", settings, catalog, threads=threads)
            items = {
                i.id: (i.stored_path, i.width, i.height)
                for i in catalog.iter_items_with_status("stored")
            }
        results.append((added, state.failures, items))
    assert results[0] == results[1]


def test_only_a_few_images_are_prepared_ahead_of_the_catalog(tmp_path, settings, monkeypatch):
    make_catalogue(tmp_path / "src", 20)
    ahead, most, lock = [0], [0], threading.Lock()
    real_prepare, real_record = intake_module.prepare, intake_module.record

    def prepare(*args, **kwargs):
        with lock:
            ahead[0] += 1
            most[0] = max(most[0], ahead[0])
        return real_prepare(*args, **kwargs)

    def record(*args, **kwargs):
        with lock:
            ahead[0] -= 1
        return real_record(*args, **kwargs)

    monkeypatch.setattr(intake_module, "prepare", prepare)
    monkeypatch.setattr(intake_module, "record", record)
    with Catalog(settings) as catalog:
        state, added = take_in(tmp_path / "src", settings.model_copy(
            update={"ingest_chunk_size": 64}), catalog, threads=2)  # fmt: skip
    assert added == 20 and state.fetches["done"] == 20
    assert 2 <= most[0] <= 4  # in parallel, but never more than 2 x threads in memory

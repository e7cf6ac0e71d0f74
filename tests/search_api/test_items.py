"""Items, uploads, sources, jobs and re-index through the API."""

import hashlib
import io
import json

import images_factory
import pytest

from indexer import jobs
from search_api import create_app

pytestmark = pytest.mark.slow


def post_form(client, path, data, headers=None):
    """POST ``data`` as multipart/form-data; a file is a ``(stream, filename)`` pair."""
    return client.post(path, data=data, headers=headers, content_type="multipart/form-data")


def post_manifest(client, headers, manifest: bytes):
    """Upload ``manifest`` (CSV bytes) as a source."""
    return post_form(
        client, "/api/v1/sources", {"manifest": (io.BytesIO(manifest), "catalogue.csv")}, headers
    )


def test_get_an_item_its_image_and_thumbnail(client, indexed):
    item = indexed.catalog.items_with_status("indexed")[0]
    body = client.get(f"/api/v1/items/{item.id}").json
    assert (body["item_id"], body["status"], body["product_id"]) == (
        item.id, "indexed", item.product_id
    )  # fmt: skip
    image = client.get(body["image_url"])
    assert image.status_code == 200
    assert image.data == (indexed.settings.home / item.stored_path).read_bytes()
    thumbnail = client.get(body["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.mimetype.startswith("image/")
    assert thumbnail.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("suffix", ["", "/image", "/thumbnail"])
def test_unknown_and_malformed_item_ids(client, suffix):
    assert client.get(f"/api/v1/items/{'b' * 64}{suffix}").status_code == 404
    assert client.get(f"/api/v1/items/not-an-id{suffix}").status_code == 422


def test_delete_removes_the_item_from_search(fresh, auth):
    client = create_app(engine=fresh).test_client()
    items = fresh.catalog.items_with_status("indexed")
    doomed = items[0]
    assert client.delete(f"/api/v1/items/{doomed.id}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/items/{doomed.id}").status_code == 404
    assert client.delete(f"/api/v1/items/{doomed.id}", headers=auth).status_code == 404
    assert fresh.item_vector(doomed.id) is None  # the id → vector lookup follows deletions
    hits = client.post("/api/v1/search", json={"item_id": items[1].id, "k": 20}).json
    assert doomed.id not in {h["item_id"] for h in hits["results"]}
    assert len(hits["results"]) == len(items) - 1


def test_upload_is_stored_by_hash_and_becomes_searchable(home_for, indexed, auth):
    """Upload → job → (run here, as a worker would) → the upload finds itself first."""
    engine = home_for("uploads")
    engine.ingest(indexed.settings.home / "images")  # some catalogue to search among
    engine.embed()
    engine.build_index()
    client = create_app(engine=engine).test_client()
    photos = [images_factory.jpeg_bytes(seed=seed) for seed in (101, 102)]
    response = post_form(client, "/api/v1/items", {
        "images": [(io.BytesIO(photos[0]), "../../etc/passwd"),
                   (io.BytesIO(photos[1]), "mug.jpg")],
        "label": "mugs",
        "metadata": json.dumps([{"product_id": "P-1"}, {"product_id": "P-2"}]),
    }, auth)  # fmt: skip
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    assert response.headers["Location"] == f"/api/v1/jobs/{job_id}"

    stored = sorted(p.name for p in (engine.settings.home / "uploads" / "images").iterdir())
    assert stored == sorted(hashlib.sha256(p).hexdigest() for p in photos)
    assert not (engine.settings.home / "etc").exists()

    pending = client.get(f"/api/v1/jobs/{job_id}").json
    assert pending["id"] == job_id and pending["complete"] is False

    jobs.run_inline(engine, job_id, threads=1)
    done = client.get(f"/api/v1/jobs/{job_id}").json
    assert done["complete"] is True and done["items"]["indexed"] == 2

    hits = post_form(
        client, "/api/v1/search", {"image": (io.BytesIO(photos[0]), "q.jpg"), "k": "3"}
    ).json["results"]
    assert hits[0]["item_id"] == hashlib.sha256(photos[0]).hexdigest()
    assert (hits[0]["product_id"], hits[0]["label"]) == ("P-1", "mugs")


def test_upload_needs_files_and_well_formed_metadata(client, auth):
    assert post_form(client, "/api/v1/items", {}, auth).json["field"] == "images"
    response = post_form(
        client, "/api/v1/items", {"images": [(io.BytesIO(b"x"), "a.jpg")], "metadata": "[1, 2]"},
        auth,
    )
    assert (response.status_code, response.json["field"]) == (422, "metadata")


def test_sources_url_list_site_and_manifest(home_for, auth):
    client = create_app(engine=home_for("sources")).test_client()
    listed = client.post(
        "/api/v1/sources",
        json={"urls": ["https://shop.example/a.jpg", "https://shop.example/b.jpg"],
              "label": "shoes"},
        headers=auth,
    )  # fmt: skip
    assert listed.status_code == 202
    assert client.get(listed.json["job_url"]).json["total"] == 2

    crawl = client.post("/api/v1/sources", json={"url": "https://shop.example/"}, headers=auth)
    assert crawl.status_code == 202

    manifest = b"image_url,product_id\nhttps://shop.example/c.jpg,P-3\n"
    uploaded = post_manifest(client, auth, manifest)
    assert uploaded.status_code == 202
    assert client.get(uploaded.json["job_url"]).json["total"] == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"urls": ["file:///etc/passwd"]}, "urls"),
        ({"urls": []}, "urls"),
        ({"url": "ftp://shop.example/"}, "url"),
        ({"url": "https://a.example/", "urls": ["https://a.example/x.jpg"]}, "url"),
    ],
)
def test_bad_sources_are_refused(client, auth, payload, field):
    response = client.post("/api/v1/sources", json=payload, headers=auth)
    assert (response.status_code, response.json["field"]) == (422, field)


def test_an_uploaded_manifest_may_not_name_local_files(client, auth):
    manifest = b"path,product_id\n/etc/passwd,P-1\n"
    response = post_manifest(client, auth, manifest)
    assert (response.status_code, response.json["field"]) == (422, "manifest")


def test_reindex_queues_a_job(home_for, auth):
    client = create_app(engine=home_for("reindex")).test_client()
    response = client.post("/api/v1/reindex", headers=auth)
    assert response.status_code == 202
    job = client.get(response.json["job_url"]).json
    assert job["kind"] == "reindex"


def test_unknown_job_is_404(client):
    assert client.get("/api/v1/jobs/999999").status_code == 404
    assert client.get("/api/v1/jobs/abc").status_code == 404

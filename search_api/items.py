"""Catalogue items: upload, read, delete, image and thumbnail; sources and re-index jobs.

Uploads are staged by the sha256 of their bytes (the client's file name is never
used as a path), listed in a manifest, and handed to the workers as one job: its
fetch stage takes each file in through :mod:`indexer.intake`, like any other image.
"""

from __future__ import annotations

import csv
import json
import logging
import uuid
from pathlib import Path

from flask import Blueprint, jsonify, request, send_file, url_for

from indexer.catalog import Item, ItemStatus
from indexer.fsutil import atomic_write_bytes
from indexer.images import content_id
from indexer.sources.manifest import ManifestError, read_manifest
from search_api import limits, params
from search_api.auth import read_access, write_access
from search_api.errors import ApiError, problem
from search_api.search import item_links, state
from workers import client

log = logging.getLogger(__name__)

bp = Blueprint("items", __name__)

MAX_URLS = 10_000


def item_body(item: Item) -> dict:
    thumbnail, image = item_links(item.id)
    return {
        "item_id": item.id,
        "product_id": item.product_id,
        "label": item.label,
        "title": item.title,
        "status": item.status,
        "error": item.error,
        "source_url": item.source_url,
        "page_url": item.page_url,
        "width": item.width,
        "height": item.height,
        "size_bytes": item.size_bytes,
        "model_version": item.model_version,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "thumbnail_url": thumbnail,
        "image_url": image,
    }


@bp.errorhandler(client.BrokerUnavailable)
def _broker_down(error: client.BrokerUnavailable):
    """503 + Retry-After: nothing was queued, and the job recorded for it is failed."""
    log.error("%s", error)  # the broker's address stays in the log, not in the answer
    job = "" if error.job_id is None else f"; job {error.job_id} is recorded as failed"
    seconds = state().settings.api_ready_retry_after
    return problem(
        503, f"the job queue is unavailable: nothing was queued{job}; send the request "
        f"again in {seconds} s", headers={"Retry-After": str(seconds)},
    )  # fmt: skip


def _item(item_id: str) -> Item:
    params.item_id("item_id", item_id)
    item = state().engine.catalog.get(item_id)
    if item is None or item.status == ItemStatus.DELETED:
        raise ApiError(404, f"no item {item_id}", field="item_id")
    return item


def _uploads_dir() -> Path:
    return state().settings.home / "uploads"


def _accepted(job) -> tuple:
    location = url_for("jobs.job", job_id=job.id)
    body = {"job_id": job.id, "status": job.status, "job_url": location}
    return jsonify(body), 202, {"Location": location}


def _submit(manifest: Path, *, allow_paths: bool = False):
    """Queue a job for a manifest; one a client sent may name URLs only, never local files."""
    api = state()
    try:
        read_manifest(manifest, allow_paths=allow_paths)
    except ManifestError as error:
        raise ApiError(422, f"manifest refused: {error}", field="manifest") from None
    try:
        job = client.submit(api.engine.catalog, api.settings, manifest, register=False)
    except client.BrokerUnavailable:
        manifest.unlink(missing_ok=True)  # its job is failed: nothing will read it
        raise
    return _accepted(job)


def _write_manifest(prefix: str, rows: list[dict]) -> Path:
    folder = _uploads_dir() / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}-{uuid.uuid4().hex}.csv"
    columns = sorted({key for row in rows for key in row})
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


@bp.get("/items/<item_id>")
@read_access
def get_item(item_id: str):
    return jsonify(item_body(_item(item_id)))


@bp.delete("/items/<item_id>")
@write_access
def delete_item(item_id: str):
    """Deleted for every search at once; the index change goes to the single writer."""
    _item(item_id)
    api = state()
    api.engine.mark_deleted([item_id])
    try:
        client.send(api.settings, "deletions")
    except Exception:  # the broker is down: the delete stands, the next index write applies it
        log.exception("could not queue the index change of deleting %s", item_id)
    return "", 204


def _blob(item_id: str, attribute: str, what: str):
    item = _item(item_id)
    relative = getattr(item, attribute)
    home = state().settings.home
    path = (home / relative).resolve() if relative else None
    if path is None or not path.is_relative_to(home) or not path.is_file():
        raise ApiError(404, f"item {item_id} has no stored {what}", field="item_id")
    response = send_file(path, mimetype=None, conditional=True, max_age=86400)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/items/<item_id>/image")
@read_access
def image(item_id: str):
    return _blob(item_id, "stored_path", "image")


@bp.get("/items/<item_id>/thumbnail")
@read_access
def thumbnail(item_id: str):
    return _blob(item_id, "thumbnail_path", "thumbnail")


@bp.post("/items")
@write_access
@limits.images("images", single=False)
def upload_items():
    files = request.files.getlist("images") + request.files.getlist("image")
    if not files:
        raise ApiError(422, "upload one or more files in the 'images' field", field="images")
    common = {
        name: params.text(name, params.raw(name, None))
        for name in ("product_id", "label", "title")
    }
    per_file: list[dict] = [{} for _ in files]
    metadata = params.raw("metadata", None)
    if metadata is not None:
        try:
            listed = json.loads(metadata)
        except ValueError:
            raise ApiError(422, "metadata must be a JSON list", field="metadata") from None
        if not isinstance(listed, list) or len(listed) != len(files):
            raise ApiError(
                422, f"metadata must be a JSON list of {len(files)} objects, one per file",
                field="metadata",
            )  # fmt: skip
        for entry, target in zip(listed, per_file, strict=True):
            if not isinstance(entry, dict):
                raise ApiError(422, "each metadata entry must be an object", field="metadata")
            for name in ("product_id", "label", "title"):
                target[name] = params.text(f"metadata.{name}", entry.get(name))
    limit = state().settings.max_image_bytes
    stored = _uploads_dir() / "images"
    stored.mkdir(parents=True, exist_ok=True)
    rows = []
    for upload, extra in zip(files, per_file, strict=True):
        data = upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"an image is larger than {limit} bytes", field="images")
        digest = content_id(data)  # the item id the intake will give it
        path = stored / digest  # by content, never by the client's file name
        if not path.exists():
            atomic_write_bytes(path, data)
        meta = {name: extra.get(name) or common[name] for name in common}
        rows.append({"path": str(path), **{k: v or "" for k, v in meta.items()}})
    return _submit(_write_manifest("upload", rows), allow_paths=True)


@bp.post("/sources")
@write_access
def add_source():
    api = state()
    body = params.json_body()
    manifest_file = request.files.get("manifest")
    if manifest_file is not None:
        suffix = Path(manifest_file.filename or "").suffix.lower()
        if suffix not in (".csv", ".jsonl", ".ndjson"):
            raise ApiError(422, "manifest must be a .csv, .jsonl or .ndjson file",
                           field="manifest")  # fmt: skip
        folder = _uploads_dir() / "manifests"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"source-{uuid.uuid4().hex}{suffix}"
        atomic_write_bytes(path, manifest_file.read(api.settings.api_max_upload_bytes))
        return _submit(path)
    if body is None:
        raise ApiError(
            400, "send a JSON object with 'url' (a site to crawl) or 'urls' (image URLs), "
            "or a multipart 'manifest' file", field="body",
        )  # fmt: skip
    if ("url" in body) == ("urls" in body):
        raise ApiError(422, "give exactly one of 'url' and 'urls'", field="url")
    meta = {name: params.text(name, params.raw(name, body))
            for name in ("product_id", "label", "title")}  # fmt: skip
    if "url" in body:
        given = [name for name, value in meta.items() if value is not None]
        if given:
            raise ApiError(422, f"{given[0]} applies to 'urls' only: a crawl takes product "
                           "data from the pages", field=given[0])  # fmt: skip
        url = params.text("url", body["url"], max_length=2048)
        if not url.lower().startswith(("http://", "https://")):
            raise ApiError(422, "url must be an http(s) URL", field="url")
        job = client.submit(api.engine.catalog, api.settings, url, register=True)
        return _accepted(job)
    urls = body["urls"]
    if not isinstance(urls, list) or not 1 <= len(urls) <= MAX_URLS:
        raise ApiError(422, f"urls must be a list of 1 to {MAX_URLS} http(s) URLs", field="urls")
    rows = []
    for url in urls:
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ApiError(422, f"urls must hold http(s) URLs, got {url!r:.80}", field="urls")
        rows.append({"image_url": url})
    for name, value in meta.items():
        if value is not None:
            for row in rows:
                row[name] = value
    return _submit(_write_manifest("urls", rows))


@bp.post("/reindex")
@write_access
def reindex():
    api = state()
    return _accepted(client.reindex(api.engine.catalog, api.settings))

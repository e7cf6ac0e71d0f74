"""``POST /api/v1/search``: by uploaded image, by image URL or by an item's stored vector."""

from __future__ import annotations

import time

import numpy as np
from flask import Blueprint, current_app, jsonify, request, url_for

from indexer.catalog import Item
from indexer.images import ImageRejected, load_image
from indexer.index.searcher import MAX_K
from indexer.sources.fetch import Fetcher, FetchError
from search_api import params
from search_api.auth import read_access
from search_api.errors import ApiError
from search_api.state import ApiState, NotReady

bp = Blueprint("search", __name__)

FILTER_OVERFETCH = 10  # with filters or grouping, look this many times deeper, then filter


def state() -> ApiState:
    return current_app.extensions["lookalike"]


def not_ready(error: Exception) -> ApiError:
    return ApiError(
        503, f"not ready: {error}",
        headers={"Retry-After": str(state().settings.api_ready_retry_after)},
    )  # fmt: skip


def item_links(item_id: str) -> tuple[str, str]:
    return (
        url_for("items.thumbnail", item_id=item_id),
        url_for("items.image", item_id=item_id),
    )


def result(item: Item, score: float) -> dict:
    thumbnail, image = item_links(item.id)
    return {
        "item_id": item.id,
        "score": round(float(score), 6),
        "product_id": item.product_id,
        "label": item.label,
        "title": item.title,
        "thumbnail_url": thumbnail,
        "image_url": image,
    }


@bp.post("/search")
@read_access
def search():
    api = state()
    settings = api.settings
    body = params.json_body()
    if body is None and request.mimetype not in (
        "multipart/form-data", "application/x-www-form-urlencoded", ""
    ):  # fmt: skip
        raise ApiError(
            400, "send multipart/form-data with an 'image' file, or a JSON object with "
            "'image_url' or 'item_id'", field="body",
        )  # fmt: skip
    k = params.integer(
        "k", params.raw("k", body), default=10, low=1, high=settings.api_search_max_k
    )
    label = params.text("label", params.raw("label", body))
    product_id = params.text("product_id", params.raw("product_id", body))
    min_score = params.number("min_score", params.raw("min_score", body), low=-1.0, high=1.0)
    group = params.boolean("group_by_product", params.raw("group_by_product", body))

    upload = request.files.get("image")
    image_url = params.text("image_url", params.raw("image_url", body), max_length=2048)
    item_id = params.raw("item_id", body)
    given = [name for name, value in
             (("image", upload), ("image_url", image_url), ("item_id", item_id))
             if value is not None]  # fmt: skip
    if len(given) != 1:
        raise ApiError(
            422, "give exactly one query: an 'image' file, an 'image_url' or an 'item_id'"
            + (f" (got {', '.join(given)})" if given else ""), field="image",
        )  # fmt: skip

    started = time.perf_counter()
    try:
        searcher = api.searcher()  # one version for this whole response
    except NotReady as error:
        raise not_ready(error) from None
    if item_id is not None:
        kind = "item"
        item_id = params.item_id("item_id", item_id)
        query = api.engine.item_vector(item_id)
        if query is None:
            if api.engine.catalog.get(item_id) is None:
                raise ApiError(404, f"no item {item_id}", field="item_id")
            raise ApiError(409, f"item {item_id} has no vector yet (not embedded)",
                           field="item_id")  # fmt: skip
    else:
        if upload is not None:
            kind, field, data = "image", "image", upload.read(settings.max_image_bytes + 1)
        else:
            kind, field = "url", "image_url"
            try:
                data = Fetcher.from_settings(settings).fetch(image_url).data
            except FetchError as error:
                raise ApiError(422, f"image_url could not be fetched: {error}",
                               field=field) from None  # fmt: skip
        try:
            loaded = load_image(
                data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
            )
        except ImageRejected as error:
            raise ApiError(422, f"{field} is not an image we accept: {error.reason}",
                           field=field) from None  # fmt: skip
        query = api.embedder().embed_images([loaded.image])

    filtered = label is not None or product_id is not None or min_score is not None or group
    total = searcher.index.manifest.total
    depth = min(MAX_K, total, k * FILTER_OVERFETCH if filtered else k)
    hits: list[dict] = []
    if depth > 0:
        scores, found = searcher.search(np.asarray(query, dtype=np.float32), depth)
        ids = [int(v) for v in found[0] if v >= 0]
        items = api.engine.catalog.by_vector_ids(ids)
        seen_products: set[str] = set()
        for score, vector_id in zip(scores[0], found[0], strict=True):
            item = items.get(int(vector_id)) if vector_id >= 0 else None
            if item is None:
                continue
            if min_score is not None and score < min_score:
                break  # best first: nothing further can pass
            if label is not None and item.label != label:
                continue
            if product_id is not None and item.product_id != product_id:
                continue
            if group:
                key = item.product_id or item.id
                if key in seen_products:
                    continue
                seen_products.add(key)
            hits.append(result(item, score))
            if len(hits) == k:
                break
    seconds = time.perf_counter() - started
    api.metrics.searched(kind, seconds)
    return jsonify(
        results=hits,
        took_ms=round(seconds * 1000, 3),
        index_version=searcher.version,
        model_version=searcher.index.manifest.model_version,
    )

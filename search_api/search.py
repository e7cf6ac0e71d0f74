"""``POST /api/v1/search``: by uploaded image, by image URL or by an item's stored vector.

The parameters are read and refused here; the search itself (filters, grouping,
over-fetch) is the engine's one :meth:`~indexer.engine.Lookalike.search`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for

from indexer.config import Settings
from indexer.engine import NoIndexError
from indexer.images import ImageRejected
from indexer.index.errors import IndexLoadError
from indexer.regions import BadBox, Box
from indexer.search import ItemNotEmbedded, ItemQuery, SearchHit, SearchResult, UnknownItem
from indexer.sources.fetch import Fetcher, FetchError
from search_api import limits, params
from search_api.auth import read_access
from search_api.errors import ApiError
from search_api.state import ApiState, NotReady

bp = Blueprint("search", __name__)


def state() -> ApiState:
    return current_app.extensions["lookalike"]


def not_ready(error: Exception) -> ApiError:
    return ApiError(
        503, f"not ready: {error}",
        headers={"Retry-After": str(state().settings.api_ready_retry_after)},
    )  # fmt: skip


# Item ids are 64 hex digits (what the item routes take): a link is the route built
# once with this in its place, then filled in (url_for costs ~60 us per call).
_ITEM_ID_SLOT = "0" * 64


def item_link_template(endpoint: str) -> str:
    """``endpoint``'s URL with ``{}`` where the item id goes (for ``str.format``)."""
    return url_for(endpoint, item_id=_ITEM_ID_SLOT).replace(_ITEM_ID_SLOT, "{}")


def item_links(item_id: str) -> tuple[str, str]:
    return (
        url_for("items.thumbnail", item_id=item_id),
        url_for("items.image", item_id=item_id),
    )


def results(hits: list[SearchHit]) -> list[dict]:
    """The engine's hit fields, with the links a browser follows."""
    thumbnail, image = item_link_template("items.thumbnail"), item_link_template("items.image")
    return [
        {**hit.as_dict(), "thumbnail_url": thumbnail.format(hit.item.id),
         "image_url": image.format(hit.item.id)}
        for hit in hits
    ]  # fmt: skip


@dataclass(frozen=True)
class QueryRequest:
    """The query of a request, as /search takes it: shared by /search and /explain."""

    kind: str  # "image", "url" or "item": the metrics label
    field: str  # the parameter the query came in
    query: bytes | ItemQuery | str  # image bytes, an item, or (url) the address to fetch


@dataclass(frozen=True)
class SearchRequest(QueryRequest):
    k: int
    filters: dict[str, Any]


def request_body() -> dict[str, Any] | None:
    """The JSON body (None for a form); 400 for a body that is neither."""
    body = params.json_body()
    if body is None and request.mimetype not in (
        "multipart/form-data", "application/x-www-form-urlencoded", ""
    ):  # fmt: skip
        raise ApiError(
            400, "send multipart/form-data with an 'image' file, or a JSON object with "
            "'image_url' or 'item_id'", field="body",
        )  # fmt: skip
    return body


def read_query(settings: Settings, body: dict[str, Any] | None) -> QueryRequest:
    """Exactly one of an 'image' file, an 'image_url' or an 'item_id', else 422."""
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
    if item_id is not None:
        return QueryRequest("item", "item_id", ItemQuery(params.item_id("item_id", item_id)))
    if upload is not None:
        return QueryRequest("image", "image", upload.read(settings.max_image_bytes + 1))
    return QueryRequest("url", "image_url", image_url)


def read_request(settings: Settings) -> SearchRequest:
    """The query and options of this request, each refused with its field named."""
    body = request_body()
    k = params.integer(
        "k", params.raw("k", body), default=10, low=1, high=settings.api_search_max_k
    )
    filters = {
        "label": params.text("label", params.raw("label", body)),
        "product_id": params.text("product_id", params.raw("product_id", body)),
        "min_score": params.number("min_score", params.raw("min_score", body),
                                   low=-1.0, high=1.0),  # fmt: skip
        "group_by_product": params.boolean(
            "group_by_product", params.raw("group_by_product", body)
        ),
    }
    asked = read_query(settings, body)
    return SearchRequest(asked.kind, asked.field, asked.query, k, filters)


def read_box() -> Box | None:
    """The ``box`` of a region query (form field or JSON value), refused with its field named."""
    return params.box("box", params.raw("box", params.json_body()))


def fetch_image(settings: Settings, url: str) -> bytes:
    try:
        return Fetcher.from_settings(settings).fetch(url).data
    except FetchError as error:
        raise ApiError(422, f"image_url could not be fetched: {error}",
                       field="image_url") from None  # fmt: skip


def ready_searcher(api: ApiState) -> None:
    """503 before any image is fetched or decoded when no index (or model) is ready."""
    try:
        api.searcher()
    except NotReady as error:
        raise not_ready(error) from None


def engine_query(api: ApiState, asked: QueryRequest, box: Box | None = None
                 ) -> bytes | ItemQuery:
    """What the engine takes: a URL fetched, the model loaded for an image query (and
    for a boxed item query, which embeds its crop)."""
    query = asked.query
    if asked.kind == "url":
        query = fetch_image(api.settings, query)
    if asked.kind != "item" or box is not None:  # a boxed item query embeds its crop
        api.load_model()  # marks the model loaded for /readyz
    return query


@contextmanager
def engine_errors(asked: QueryRequest) -> Iterator[None]:
    """The engine's errors about a query, as the API's (the query's field named)."""
    try:
        yield
    except BadBox as error:  # only now is the photo's size known
        raise ApiError(422, str(error), field="box") from None
    except UnknownItem as error:
        raise ApiError(404, str(error), field=asked.field) from None
    except ItemNotEmbedded as error:
        raise ApiError(409, str(error), field=asked.field) from None
    except ImageRejected as error:
        raise ApiError(422, f"{asked.field} is not an image we accept: {error.reason}",
                       field=asked.field) from None  # fmt: skip
    except (NoIndexError, IndexLoadError) as error:
        raise not_ready(error) from None


def run_search(api: ApiState, asked: SearchRequest, box: Box | None = None) -> SearchResult:
    """The engine's search (of ``box``'s crop, if given), its errors turned into the API's."""
    query = engine_query(api, asked, box)
    with engine_errors(asked):
        return api.engine.search(query, asked.k, box=box, **asked.filters)


@bp.post("/search")
@read_access
@limits.images("image", single=True)
def search():
    api = state()
    asked = read_request(api.settings)
    box = read_box()
    started = time.perf_counter()
    if asked.kind != "item":  # an item query costs nothing before the engine's own 503
        ready_searcher(api)
    found = run_search(api, asked, box)
    seconds = time.perf_counter() - started
    api.metrics.searched(asked.kind, seconds)
    return jsonify(
        results=results(found.hits),
        took_ms=round(seconds * 1000, 3),
        index_version=found.index_version,
        model_version=found.model_version,
        box=found.box,
    )

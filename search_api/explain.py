"""``POST /api/v1/explain``: where the similarity of a query and one result comes from.

The query is read exactly as ``/search`` reads it (an ``image`` file, an ``image_url``
or an ``item_id``); ``result_item_id`` names the catalogued item to compare it with and
``method`` picks ``decomposition`` (default) or ``occlusion``; ``box`` explains a region
query (as ``/search`` takes it: the crop of the query photo). The work is the engine's
:meth:`~indexer.engine.Lookalike.explain`.
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify

from indexer.explain import DECOMPOSITION, METHODS, NotDecomposable, UnknownResultItem
from search_api import limits, params
from search_api.auth import read_access
from search_api.errors import ApiError
from search_api.search import (
    engine_errors,
    engine_query,
    read_box,
    read_query,
    ready_searcher,
    request_body,
    state,
)

bp = Blueprint("explain", __name__)


def read_method(body) -> str:
    method = params.raw("method", body)
    if method is None:
        return DECOMPOSITION
    if method not in METHODS:
        raise ApiError(422, f"method must be one of {', '.join(METHODS)}", field="method")
    return method


@bp.post("/explain")
@read_access
@limits.images("image", single=True)
def explain():
    api = state()
    body = request_body()
    result_item_id = params.raw("result_item_id", body)
    if result_item_id is None:
        raise ApiError(422, "result_item_id is required: the item to explain the match with",
                       field="result_item_id")  # fmt: skip
    result_item_id = params.item_id("result_item_id", result_item_id)
    method = read_method(body)
    asked = read_query(api.settings, body)
    box = read_box()
    started = time.perf_counter()
    ready_searcher(api)
    query = engine_query(api, asked, box)
    api.load_model()  # an item query needs the model too: it explains pixels
    with engine_errors(asked):
        try:
            explained = api.engine.explain(query, result_item_id, method=method, box=box)
        except UnknownResultItem as error:
            raise ApiError(404, str(error), field="result_item_id") from None
        except NotDecomposable as error:
            raise ApiError(422, str(error), field="method") from None
    seconds = time.perf_counter() - started
    api.metrics.explained(method, seconds)
    return jsonify(**explained.as_dict(), took_ms=round(seconds * 1000, 3))

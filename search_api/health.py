"""Liveness, readiness, Prometheus metrics and catalogue statistics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from search_api.auth import read_access
from search_api.metrics import CONTENT_TYPE
from search_api.search import not_ready, state
from search_api.state import NotReady

bp = Blueprint("health", __name__)
api_bp = Blueprint("stats", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    api = state()
    if not api.model_loaded:
        raise not_ready(NotReady("the model is still loading"))
    try:
        searcher = api.searcher()
    except NotReady as error:
        raise not_ready(error) from None
    return jsonify(status="ready", index_version=searcher.version,
                   model_version=searcher.index.manifest.model_version)  # fmt: skip


@bp.get("/metrics")
def metrics():
    api = state()
    api.note_serving()  # a version swapped in by a search's own engine call
    return Response(api.metrics.render(), content_type=CONTENT_TYPE)


@api_bp.get("/stats")
@read_access
def stats():
    api = state()
    engine = api.engine
    current = engine.indexes.current_version()
    manifest = engine.indexes.manifest(current) if current else None
    held = engine.loaded_searcher()
    return jsonify(
        items=engine.catalog.counts(),
        index=None if manifest is None else {
            "version": manifest.version,
            "model_version": manifest.model_version,
            "dim": manifest.dim,
            "index_type": manifest.index_type,
            "factory": manifest.factory,
            "shards": manifest.n_shards,
            "vectors": manifest.total,
            "shard_vectors": [entry.count for entry in manifest.shards],
            "created": manifest.created,
        },
        serving_version=held[0] if held is not None else None,
        search={"max_k": api.settings.api_search_max_k},  # the largest k a search may ask
        model={"version": engine.model.version, "dim": engine.model.dim,
               "loaded": api.model_loaded},
    )  # fmt: skip

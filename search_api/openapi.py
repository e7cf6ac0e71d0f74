"""The OpenAPI 3.1 document of the API, served at ``/api/v1/openapi.json``.

Built from one function per group of paths and of schemas; the largest ``k`` comes
from the settings (``LOOKALIKE_API_SEARCH_MAX_K``), the same bound the search obeys.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, current_app, jsonify

bp = Blueprint("openapi", __name__)

ITEM_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TEXT = {"type": "string", "minLength": 1, "maxLength": 512}
PROBLEM = {"$ref": "#/components/responses/Problem"}
WRITE = [{"bearer": []}]
_JOB_STATUS = "(queued|running|done|failed|skipped)"
JOB_STATUSES = f"^{_JOB_STATUS}(,{_JOB_STATUS})*$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: dict) -> dict:
    return {"description": description, "content": _json(schema)}


def _item_path(extra: dict) -> dict:
    return {
        "parameters": [{"name": "item_id", "in": "path", "required": True, "schema": ITEM_ID}],
        **extra,
    }


def _errors(*codes: int) -> dict:
    return {str(code): PROBLEM for code in codes}


ACCEPTED = {
    "description": "accepted: a job was queued",
    "headers": {"Location": {"schema": {"type": "string"}}},
    "content": _json(_ref("Accepted")),
}


def search_fields(max_k: int) -> dict:
    """The search options, shared by the form and the JSON body; ``k`` up to ``max_k``."""
    return {
        "k": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 10},
        "label": TEXT,
        "product_id": TEXT,
        "min_score": {"type": "number", "minimum": -1, "maximum": 1},
        "group_by_product": {"type": "boolean", "default": False},
    }


def _search_schemas() -> dict:
    """Errors and search results."""
    return {
        "Problem": {
            "type": "object",
            "required": ["title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "field": {"type": "string"},
            },
        },
        "Hit": {
            "type": "object",
            "required": ["item_id", "score", "thumbnail_url", "image_url"],
            "properties": {
                "item_id": ITEM_ID,
                "score": {"type": "number"},
                "product_id": {"type": ["string", "null"]},
                "label": {"type": ["string", "null"]},
                "title": {"type": ["string", "null"]},
                "thumbnail_url": {"type": "string"},
                "image_url": {"type": "string"},
            },
        },
        "SearchResponse": {
            "type": "object",
            "required": ["results", "took_ms", "index_version", "model_version"],
            "properties": {
                "results": {"type": "array", "items": _ref("Hit")},
                "took_ms": {"type": "number"},
                "index_version": {"type": "string"},
                "model_version": {"type": "string"},
            },
        },
    }


def _catalogue_schemas() -> dict:
    """Items, jobs and statistics."""
    return {
        "Item": {
            "type": "object",
            "required": ["item_id", "status"],
            "properties": {"item_id": ITEM_ID, "status": {"type": "string"}},
        },
        "Accepted": {
            "type": "object",
            "required": ["job_id", "status", "job_url"],
            "properties": {
                "job_id": {"type": "integer"},
                "status": {"type": "string"},
                "job_url": {"type": "string"},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "status", "complete", "summary"],
            "properties": {
                "id": {"type": "integer"},
                "status": {"type": "string"},
                "complete": {"type": "boolean"},
                "summary": {"type": "string"},
            },
        },
        "Stats": {
            "type": "object",
            "required": ["items", "index", "model"],
            "properties": {
                "items": {"type": "object"},
                "index": {"type": ["object", "null"]},
                "model": {"type": "object"},
                "serving_version": {"type": ["string", "null"]},
                "search": {
                    "type": "object",
                    "properties": {"max_k": {"type": "integer", "minimum": 1}},
                },
            },
        },
    }


def _map_schemas() -> dict:
    """The t-SNE map."""
    return {
        "MapPoint": {
            "type": "object",
            "required": ["item_id", "x", "y", "cluster", "label", "product_id", "title",
                         "thumbnail_url"],
            "properties": {
                "item_id": ITEM_ID,
                "x": {"type": "number", "minimum": 0, "maximum": 1},
                "y": {"type": "number", "minimum": 0, "maximum": 1},
                "cluster": {"type": "integer", "minimum": 0},
                "label": {"type": ["string", "null"]},
                "product_id": {"type": ["string", "null"]},
                "title": {"type": ["string", "null"]},
                "thumbnail_url": {"type": "string"},
            },
        },  # fmt: skip
        "Map": {
            "type": "object",
            "required": ["index_version", "model_version", "computed_at", "seconds",
                         "method", "total", "sampled", "clusters",
                         "current_index_version", "stale", "points"],
            "properties": {
                "index_version": {"type": "string"},
                "model_version": {"type": "string"},
                "computed_at": {"type": "string"},
                "seconds": {"type": "number", "minimum": 0},
                "method": {"type": "string"},
                "total": {"type": "integer", "minimum": 0},
                "sampled": {"type": "integer", "minimum": 0},
                "clusters": {"type": "integer", "minimum": 0},
                "current_index_version": {"type": "string"},
                "stale": {"type": "boolean"},
                "points": {"type": "array", "items": _ref("MapPoint")},
            },
        },  # fmt: skip
        "MapPending": {
            "type": "object",
            "required": ["status", "index_version", "detail"],
            "properties": {
                "status": {"const": "pending"},
                "index_version": {"type": "string"},
                "detail": {"type": "string"},
            },
        },
    }


def _search_paths(max_k: int) -> dict:
    """``POST /api/v1/search``."""
    fields = search_fields(max_k)
    return {
        "/api/v1/search": {
            "post": {
                "summary": "Search by an uploaded image, an image URL or an item id",
                "parameters": [
                    {"name": "k", "in": "query", "schema": fields["k"]},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["image"],
                                "properties": {
                                    "image": {"type": "string", "format": "binary"},
                                    **fields,
                                },
                            }
                        },
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "image_url": {"type": "string", "format": "uri"},
                                    "item_id": ITEM_ID,
                                    **fields,
                                },
                                "oneOf": [
                                    {"required": ["image_url"]},
                                    {"required": ["item_id"]},
                                ],
                            }
                        },
                    },
                },
                "responses": {
                    "200": _ok("hits, best first", _ref("SearchResponse")),
                    **_errors(400, 401, 404, 409, 413, 422, 503),
                },
            }
        },
    }


def _item_paths() -> dict:
    """Items: upload, get, delete, image and thumbnail."""
    return {
        "/api/v1/items": {
            "post": {
                "summary": "Upload one or many images with metadata",
                "security": WRITE,
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["images"],
                                "properties": {
                                    "images": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    },
                                    "product_id": TEXT,
                                    "label": TEXT,
                                    "title": TEXT,
                                    "metadata": {
                                        "type": "string",
                                        "description": "JSON list, one object per file",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {"202": ACCEPTED, **_errors(400, 401, 413, 422)},
            }
        },
        "/api/v1/items/{item_id}": _item_path({
            "get": {
                "summary": "One item",
                "responses": {"200": _ok("the item", _ref("Item")), **_errors(404, 422)},
            },
            "delete": {
                "summary": "Delete an item from the catalog, vectors and index",
                "security": WRITE,
                "responses": {"204": {"description": "deleted"},
                              **_errors(401, 404, 422)},
            },
        }),  # fmt: skip
        "/api/v1/items/{item_id}/image": _item_path({
            "get": {
                "summary": "The stored original",
                "responses": {"200": {"description": "image bytes",
                                      "content": {"image/*": {}}}, **_errors(404, 422)},
            }
        }),  # fmt: skip
        "/api/v1/items/{item_id}/thumbnail": _item_path({
            "get": {
                "summary": "The thumbnail",
                "responses": {"200": {"description": "image bytes",
                                      "content": {"image/*": {}}}, **_errors(404, 422)},
            }
        }),  # fmt: skip
    }


def _source_paths() -> dict:
    """Sources: manifests, URL lists and sites to crawl."""
    return {
        "/api/v1/sources": {
            "post": {
                "summary": "Add a manifest, a list of image URLs or a site to crawl",
                "security": WRITE,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "url": {"type": "string", "format": "uri"},
                                    "urls": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 10000,
                                        "items": {"type": "string", "format": "uri"},
                                    },
                                    "product_id": TEXT,
                                    "label": TEXT,
                                    "title": TEXT,
                                },
                                "oneOf": [{"required": ["url"]}, {"required": ["urls"]}],
                            }
                        },
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["manifest"],
                                "properties": {
                                    "manifest": {"type": "string", "format": "binary"}
                                },
                            }
                        },
                    },
                },
                "responses": {"202": ACCEPTED, **_errors(400, 401, 413, 422)},
            }
        },
    }


def _job_paths() -> dict:
    """Jobs and the re-index trigger."""
    return {
        "/api/v1/jobs": {
            "get": {
                "summary": "Recent jobs, newest first, with progress and a few failures",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {
                        "type": "string", "pattern": JOB_STATUSES,
                        "description": "comma-separated job statuses"}},
                    {"name": "limit", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                ],  # fmt: skip
                "responses": {
                    "200": _ok("jobs", {
                        "type": "object", "required": ["jobs"],
                        "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                    }),  # fmt: skip
                    **_errors(422),
                },
            },
        },
        "/api/v1/jobs/{job_id}": {
            "parameters": [
                {"name": "job_id", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}
            ],  # fmt: skip
            "get": {
                "summary": "A job's progress",
                "responses": {"200": _ok("progress", _ref("Job")), **_errors(404)},
            },
        },
        "/api/v1/reindex": {
            "post": {
                "summary": "Queue a full re-index (a new index version)",
                "security": WRITE,
                "responses": {"202": ACCEPTED, **_errors(401)},
            }
        },
    }


def _service_paths() -> dict:
    """The map, statistics, health, metrics and this document."""
    return {
        "/api/v1/map": {
            "get": {
                "summary": "The t-SNE map of the current index version (sampled points)",
                "description": "200: the map, or an older version's with stale=true while "
                "the current one is computed; 202: none yet, its computation is queued.",
                "responses": {
                    "200": _ok("the map", _ref("Map")),
                    "202": {
                        "description": "no map yet: being computed",
                        "headers": {"Retry-After": {"schema": {"type": "string"}}},
                        "content": _json(_ref("MapPending")),
                    },
                    **_errors(503),
                },
            }
        },
        "/api/v1/stats": {
            "get": {
                "summary": "Counts by state, index version, shards, vectors, model",
                "responses": {"200": _ok("statistics", _ref("Stats"))},
            }
        },
        "/healthz": {
            "get": {"summary": "The process is up",
                    "responses": {"200": _ok("up", {"type": "object"})}}  # fmt: skip
        },
        "/readyz": {
            "get": {
                "summary": "The model and an index version are loaded",
                "responses": {"200": _ok("ready", {"type": "object"}), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text exposition",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {}}}
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }


@cache
def document(max_k: int) -> dict[str, Any]:
    """The whole document; ``max_k`` is the settings' largest k (``api_search_max_k``)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Lookalike search API", "version": "1"},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Problem": {
                    "description": "an error (RFC 9457)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
            "schemas": {**_search_schemas(), **_catalogue_schemas(), **_map_schemas()},
        },
        "paths": {
            **_search_paths(max_k),
            **_item_paths(),
            **_source_paths(),
            **_job_paths(),
            **_service_paths(),
        },
    }


def app_document() -> dict[str, Any]:
    """The document of the app serving this request (its settings decide the largest k)."""
    return document(current_app.extensions["lookalike"].settings.api_search_max_k)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(app_document())

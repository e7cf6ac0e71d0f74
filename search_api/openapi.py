"""The OpenAPI 3.1 document of the API, served at ``/api/v1/openapi.json``.

Built from one function per group of paths and of schemas; the largest ``k`` comes
from the settings (``LOOKALIKE_API_SEARCH_MAX_K``), the same bound the search obeys.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, current_app, jsonify

from indexer.explain import METHODS as EXPLAIN_METHODS
from indexer.regions import BOX_PATTERN

bp = Blueprint("openapi", __name__)

ITEM_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TEXT = {"type": "string", "minLength": 1, "maxLength": 512}
PROBLEM = {"$ref": "#/components/responses/Problem"}
WRITE = [{"bearer": []}]
_JOB_STATUS = "(queued|running|done|failed|skipped)"
JOB_STATUSES = f"^{_JOB_STATUS}(,{_JOB_STATUS})*$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _t(name: str, **bounds: Any) -> dict:
    """A JSON Schema of one ``type`` (``"string"``, ``["string", "null"]``…) and its bounds."""
    return {"type": name, **bounds}


def _object(required: list[str], **properties: dict) -> dict:
    """An object schema: the names it must have and the schema of each property."""
    return {"type": "object", "required": required, "properties": properties}


def _form(required: list[str], **properties: dict) -> dict:
    """A request body of multipart form fields."""
    return {"multipart/form-data": {"schema": _object(required, **properties)}}


def _body(content: dict) -> dict:
    return {"required": True, "content": content}


STRING, INTEGER, NUMBER = _t("string"), _t("integer"), _t("number")
OPTIONAL = _t(["string", "null"])
FILE = _t("string", format="binary")
URI = _t("string", format="uri")
COUNT = _t("integer", minimum=0)
BOX_TEXT = _t("string", pattern=BOX_PATTERN,
              description="a region of the query photo, x0,y0,x1,y1 in its pixels")  # fmt: skip
BOX_ARRAY = _t("array", items=NUMBER, minItems=4, maxItems=4)
IMAGE = {"description": "image bytes", "content": {"image/*": {}}}
HEATMAP = _t("array", items=_t("array", items=NUMBER), description="rows of cells")


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
    "headers": {"Location": {"schema": STRING}},
    "content": _json(_ref("Accepted")),
}


def search_fields(max_k: int) -> dict:
    """The search options, shared by the form and the JSON body; ``k`` up to ``max_k``."""
    return {
        "k": _t("integer", minimum=1, maximum=max_k, default=10),
        "label": TEXT,
        "product_id": TEXT,
        "min_score": _t("number", minimum=-1, maximum=1),
        "group_by_product": _t("boolean", default=False),
    }


def _search_schemas() -> dict:
    """Errors and search results."""
    return {
        "Problem": _object(
            ["title", "status", "detail"],
            type=STRING, title=STRING, status=INTEGER, detail=STRING, field=STRING,
        ),
        "Hit": _object(
            ["item_id", "score", "thumbnail_url", "image_url"],
            item_id=ITEM_ID, score=NUMBER, product_id=OPTIONAL, label=OPTIONAL,
            title=OPTIONAL, thumbnail_url=STRING, image_url=STRING,
        ),
        "ExplainedImage": _object(
            ["width", "height", "box"],
            width=_t("integer", minimum=1), height=_t("integer", minimum=1),
            box=_t("array", items=NUMBER, minItems=4, maxItems=4,
                   description="x0, y0, x1, y1: the model's crop of the photo, which the "
                   "heatmap's cells tile; in the upright photo's pixels"),
        ),
        "ExplainResponse": _object(
            ["score", "method", "query_heatmap", "result_heatmap", "query_image",
             "result_image", "model_version", "result_item_id", "took_ms"],
            score=NUMBER, search_score=_t(["number", "null"]),
            method=_t("string", enum=list(EXPLAIN_METHODS)),
            query_heatmap=HEATMAP, result_heatmap=HEATMAP,
            query_image=_ref("ExplainedImage"), result_image=_ref("ExplainedImage"),
            model_version=STRING, result_item_id=ITEM_ID, took_ms=NUMBER,
        ),
        "SearchResponse": _object(
            ["results", "took_ms", "index_version", "model_version"],
            results=_t("array", items=_ref("Hit")), took_ms=NUMBER,
            index_version=STRING, model_version=STRING,
            box={"description": "the pixels cropped for a region query, else null",
                 "oneOf": [{**BOX_ARRAY, "items": INTEGER}, _t("null")]},
        ),
    }  # fmt: skip


def _catalogue_schemas() -> dict:
    """Items, jobs and statistics."""
    return {
        "Item": _object(["item_id", "status"], item_id=ITEM_ID, status=STRING),
        "Accepted": _object(
            ["job_id", "status", "job_url"], job_id=INTEGER, status=STRING, job_url=STRING
        ),
        "Job": _object(
            ["id", "status", "complete", "summary"],
            id=INTEGER, status=STRING, complete=_t("boolean"), summary=STRING,
        ),
        "Stats": _object(
            ["items", "index", "model"],
            items=_t("object"), index=_t(["object", "null"]), model=_t("object"),
            serving_version=OPTIONAL,
            search={"type": "object", "properties": {"max_k": _t("integer", minimum=1)}},
        ),
    }  # fmt: skip


def _map_schemas() -> dict:
    """The t-SNE map."""
    unit = _t("number", minimum=0, maximum=1)
    return {
        "MapPoint": _object(
            ["item_id", "x", "y", "cluster", "label", "product_id", "title", "thumbnail_url"],
            item_id=ITEM_ID, x=unit, y=unit, cluster=COUNT, label=OPTIONAL,
            product_id=OPTIONAL, title=OPTIONAL, thumbnail_url=STRING,
        ),
        "Map": _object(
            ["index_version", "model_version", "computed_at", "seconds", "method", "total",
             "sampled", "clusters", "current_index_version", "stale", "points"],
            index_version=STRING, model_version=STRING, computed_at=STRING,
            seconds=_t("number", minimum=0), method=STRING, total=COUNT, sampled=COUNT,
            clusters=COUNT, current_index_version=STRING, stale=_t("boolean"),
            points=_t("array", items=_ref("MapPoint")),
        ),
        "MapPending": _object(
            ["status", "index_version", "detail"],
            status={"const": "pending"}, index_version=STRING, detail=STRING,
        ),
    }  # fmt: skip


def _query_by_reference(fields: dict) -> dict:
    """A JSON body with the query by reference, as /search and /explain read it: an
    ``image_url`` or an ``item_id``, an optional ``box``, and the endpoint's ``fields``."""
    return {
        "type": "object",
        "properties": {"image_url": URI, "item_id": ITEM_ID, **fields,
                       "box": {"anyOf": [BOX_TEXT, BOX_ARRAY]}},
        "oneOf": [{"required": ["image_url"]}, {"required": ["item_id"]}],
    }


def _search_paths(max_k: int) -> dict:
    """``POST /api/v1/search``."""
    fields = search_fields(max_k)
    by_reference = _query_by_reference(fields)
    return {
        "/api/v1/search": {
            "post": {
                "summary": "Search by an uploaded image, an image URL or an item id",
                "parameters": [{"name": "k", "in": "query", "schema": fields["k"]}],
                "requestBody": _body({**_form(["image"], image=FILE, box=BOX_TEXT, **fields),
                                      **_json(by_reference)}),
                "responses": {
                    "200": _ok("hits, best first", _ref("SearchResponse")),
                    **_errors(400, 401, 404, 409, 413, 422, 503),
                },
            }
        },
    }  # fmt: skip


def _explain_paths() -> dict:
    """``POST /api/v1/explain``."""
    fields = {"result_item_id": ITEM_ID,
              "method": _t("string", enum=list(EXPLAIN_METHODS), default="decomposition")}
    by_reference = {**_query_by_reference(fields), "required": ["result_item_id"]}
    return {
        "/api/v1/explain": {
            "post": {
                "summary": "Where the similarity of a query and one result comes from",
                "description": "The query as /search takes it; heatmaps at feature-map "
                "resolution over each image's crop box. decomposition: the cells of each "
                "map sum to the score; occlusion: the score's drop with each patch hidden.",
                "requestBody": _body({
                    **_form(["image", "result_item_id"], image=FILE, box=BOX_TEXT, **fields),
                    **_json(by_reference),
                }),
                "responses": {
                    "200": _ok("the score and both heatmaps", _ref("ExplainResponse")),
                    **_errors(400, 401, 404, 409, 413, 422, 503),
                },
            }
        },
    }  # fmt: skip


def _image_path(summary: str) -> dict:
    """``GET`` of an item's image bytes (the original or the thumbnail)."""
    return _item_path({"get": {"summary": summary,
                               "responses": {"200": IMAGE, **_errors(404, 422)}}})  # fmt: skip


def _item_paths() -> dict:
    """Items: upload, get, delete, image and thumbnail."""
    upload = _form(
        ["images"],
        images=_t("array", items=FILE), product_id=TEXT, label=TEXT, title=TEXT,
        metadata=_t("string", description="JSON list, one object per file"),
    )  # fmt: skip
    return {
        "/api/v1/items": {
            "post": {
                "summary": "Upload one or many images with metadata",
                "security": WRITE,
                "requestBody": _body(upload),
                "responses": {"202": ACCEPTED, **_errors(400, 401, 413, 422, 503)},
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
        "/api/v1/items/{item_id}/image": _image_path("The stored original"),
        "/api/v1/items/{item_id}/thumbnail": _image_path("The thumbnail"),
    }


def _source_paths() -> dict:
    """Sources: manifests, URL lists and sites to crawl."""
    by_url = {
        "type": "object",
        "properties": {
            "url": URI,
            "urls": _t("array", minItems=1, maxItems=10000, items=URI),
            "product_id": TEXT,
            "label": TEXT,
            "title": TEXT,
        },
        "oneOf": [{"required": ["url"]}, {"required": ["urls"]}],
    }
    return {
        "/api/v1/sources": {
            "post": {
                "summary": "Add a manifest, a list of image URLs or a site to crawl",
                "security": WRITE,
                "requestBody": _body({**_json(by_url), **_form(["manifest"], manifest=FILE)}),
                "responses": {"202": ACCEPTED, **_errors(400, 401, 413, 422, 503)},
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
                "responses": {"202": ACCEPTED, **_errors(401, 503)},
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
                        "headers": {"Retry-After": {"schema": STRING}},
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
                    "responses": {"200": _ok("up", _t("object"))}}  # fmt: skip
        },
        "/readyz": {
            "get": {
                "summary": "The model and an index version are loaded",
                "responses": {"200": _ok("ready", _t("object")), **_errors(503)},
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
                "responses": {"200": _ok("OpenAPI 3.1", _t("object"))},
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
            **_explain_paths(),
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

"""``GET /api/v1/map``: the t-SNE map of the current index version, computed by the workers.

* 200: the current version's map; or, while that one is being computed, the
  newest map of an older version with ``stale: true``.
* 202: no map of any version yet; its computation is queued (``Retry-After``).
* 503: no index version at all.

A missing map is queued on the workers' ``embed`` queue by task name, at most
once per ``map_requeue_after`` seconds (a marker file beside the cache), so
reloading the page while it is computed does not pile up messages. A broker
that cannot be reached is logged; the answer is the same, and the next request
after the marker's time tries again.
"""

from __future__ import annotations

import logging
import threading

from flask import Blueprint, current_app, jsonify

from indexer import maps
from indexer.config import Settings
from indexer.engine import NoIndexError
from search_api.auth import read_access
from search_api.search import item_link_template, not_ready, state
from workers import client

log = logging.getLogger(__name__)

bp = Blueprint("maps", __name__)

PENDING_RETRY_AFTER = 5  # seconds; a small catalogue's map takes about that long


class _MapMemo:
    """The last map read from disk, by (path, mtime, size): 50,000 points parse once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._data: dict | None = None

    def load(self, settings: Settings, version: str) -> dict | None:
        path = maps.map_path(settings, version)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key == self._key:
                return self._data
        data = maps.load_map(settings, version)
        if data is not None:
            with self._lock:
                self._key, self._data = key, data
        return data


def _memo() -> _MapMemo:
    return current_app.extensions.setdefault("lookalike_map_memo", _MapMemo())


def queue_map(settings: Settings, version: str) -> bool:
    """Queue ``version``'s map unless it was queued lately; whether a message went out."""
    if not maps.claim_queue_slot(settings, version):
        return False
    try:
        client.send(settings, "map", version)
    except Exception:  # the broker is down: answer anyway, try again on a later request
        log.exception("could not queue the map of index version %s", version)
        maps.release_queue_slot(settings, version)
        return False
    log.info("queued the map of index version %s", version)
    return True


def _body(data: dict, current: str) -> dict:
    thumbnail = item_link_template("items.thumbnail")  # url_for once, not 50,000 times
    points = [
        {
            "item_id": p["item_id"],
            "x": p["x"],
            "y": p["y"],
            "cluster": p["cluster"],
            "label": p["label"],
            "product_id": p["product_id"],
            "title": p["title"],
            "thumbnail_url": thumbnail.format(p["item_id"]),
        }
        for p in data["points"]
    ]
    return {
        "index_version": data["index_version"],
        "model_version": data["model_version"],
        "computed_at": data["computed_at"],
        "seconds": data["seconds"],
        "method": data["method"],
        "total": data["total"],
        "sampled": data["sampled"],
        "clusters": data["clusters"],
        "current_index_version": current,
        "stale": data["index_version"] != current,
        "points": points,
    }


@bp.get("/map")
@read_access
def catalogue_map():
    api = state()
    settings = api.settings
    current = api.engine.indexes.current_version()
    if current is None:
        raise not_ready(NoIndexError("no index version yet; a map needs one"))
    memo = _memo()
    data = memo.load(settings, current)
    if data is None:
        queue_map(settings, current)
        data = maps.latest_map(settings, besides=current, load=memo.load)
    if data is not None:
        return jsonify(_body(data, current))
    response = jsonify(
        status="pending",
        index_version=current,
        detail=f"the map of index version {current} is being computed; "
        "try again in a few seconds",
    )
    response.status_code = 202
    response.headers["Retry-After"] = str(PENDING_RETRY_AFTER)
    return response

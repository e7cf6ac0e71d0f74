"""``GET /api/v1/map``: 503 without an index, 202 (and a queued task) before a map, 200 after."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from indexer import maps
from search_api import create_app


def queued_maps(home: Path) -> list[tuple[str, list]]:
    """(task name, args) of every message waiting on the embedded broker's embed queue."""
    folder = home / "broker" / "queue"
    found = []
    for path in sorted(folder.glob("*.embed.msg")) if folder.is_dir() else []:
        message = json.loads(path.read_text())
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


def test_no_index_version_is_503(home_for):
    client = create_app(engine=home_for("empty")).test_client()
    response = client.get("/api/v1/map")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "no index version" in response.get_json()["detail"]
    assert response.headers["Retry-After"]


def test_a_missing_map_is_queued_once_then_served(fresh):
    settings = fresh.settings
    version = fresh.indexes.current_version()
    client = create_app(engine=fresh).test_client()

    first = client.get("/api/v1/map")
    assert first.status_code == 202 and int(first.headers["Retry-After"]) > 0
    body = first.get_json()
    assert body["status"] == "pending" and body["index_version"] == version
    assert version in body["detail"]
    assert queued_maps(settings.home) == [("lookalike.map", [version])]
    assert client.get("/api/v1/map").status_code == 202  # a reload: no second message
    assert len(queued_maps(settings.home)) == 1

    # what the worker that takes the message does
    computed, _ = maps.ensure_map(settings, fresh.catalog, version)
    response = client.get("/api/v1/map")
    assert response.status_code == 200
    data = response.get_json()
    assert data["index_version"] == data["current_index_version"] == version
    assert data["stale"] is False and data["model_version"] == computed["model_version"]
    assert data["total"] == data["sampled"] == len(data["points"]) == 12
    assert data["clusters"] >= 1 and data["seconds"] > 0 and data["method"]
    indexed = {item.id: item for item in fresh.catalog.items_with_status("indexed")}
    for point in data["points"]:
        assert 0 <= point["x"] <= 1 and 0 <= point["y"] <= 1
        assert point["label"] == indexed[point["item_id"]].label
    thumbnail = client.get(data["points"][0]["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.mimetype.startswith("image/")


def test_a_new_version_serves_the_older_map_as_stale_and_queues_its_own(fresh, writer):
    settings = fresh.settings
    old = fresh.indexes.current_version()
    maps.ensure_map(settings, fresh.catalog, old)
    new = writer.build_index()  # a re-index in another process, as a worker would
    client = create_app(engine=fresh).test_client()

    response = client.get("/api/v1/map")
    assert response.status_code == 200
    data = response.get_json()
    assert data["stale"] is True
    assert (data["index_version"], data["current_index_version"]) == (old, new)
    assert len(data["points"]) == 12
    assert queued_maps(settings.home) == [("lookalike.map", [new])]

    maps.ensure_map(settings, fresh.catalog, new)
    fresh_map = client.get("/api/v1/map").get_json()
    assert fresh_map["stale"] is False and fresh_map["index_version"] == new


def test_reads_need_the_key_when_configured(home_for, fresh):
    engine = home_for("locked", api_read_key_required=True)
    client = create_app(engine=engine).test_client()
    assert client.get("/api/v1/map").status_code == 401

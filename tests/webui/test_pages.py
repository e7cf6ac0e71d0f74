"""The UI pages through Flask's test client: they render, their files load, the policy holds."""

from __future__ import annotations

import re

import numpy as np
import pytest

from indexer.config import Settings
from webui import create_app
from webui.views import CONTENT_SECURITY_POLICY

PAGES = {"/": "Search", "/map": "Catalogue map", "/status": "Status"}


@pytest.fixture
def client(tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=None, api_preload=False,
                        _env_file=None)  # fmt: skip
    app = create_app(settings=settings)
    yield app.test_client()
    app.extensions["lookalike"].close()


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_with_the_shared_layout(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert PAGES[path] in html
    for link in ('href="/"', 'href="/map"', 'href="/status"'):  # the navigation
        assert link in html
    assert html.count('aria-current="page"') == 1
    assert 'id="index-version"' in html and 'id="message"' in html
    assert "<script>" not in html  # no inline script: the policy would block it


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_the_content_security_policy(client, path):
    headers = client.get(path).headers
    policy = headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy and "img-src 'self' data: blob:" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_every_script_and_stylesheet_a_page_names_is_served_with_its_type(client):
    seen = set()
    for path in PAGES:
        html = client.get(path).get_data(as_text=True)
        seen.update(re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html))
    assert {s for s in seen if s.endswith(".js")} == {
        "/ui/static/js/layout.js", "/ui/static/js/search.js", "/ui/static/js/map.js",
        "/ui/static/js/status.js",
    }  # fmt: skip
    for path in sorted(seen):
        response = client.get(path)
        assert response.status_code == 200, path
        expected = "text/javascript" if path.endswith(".js") else "text/css"
        assert response.mimetype == expected, path
        response.close()


def test_modules_imported_by_the_scripts_are_served(client):
    layout = client.get("/ui/static/js/layout.js").get_data(as_text=True)
    imported = re.findall(r'from "\./([\w.]+)"', layout)
    assert imported == ["api.js"]
    api = client.get("/ui/static/js/api.js")
    assert api.status_code == 200 and api.mimetype == "text/javascript"
    assert "export async function api" in api.get_data(as_text=True)


def test_the_api_is_still_there_and_unknown_ui_files_are_problem_json(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    missing = client.get("/ui/static/js/nope.js")
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    stats = client.get("/api/v1/stats")
    assert stats.status_code == 200 and stats.get_json()["index"] is None


def test_one_largest_k_for_the_page_the_document_the_api_and_the_engine(tmp_path):
    from indexer.config import MAX_K
    from indexer.index import searcher

    settings = Settings(home=tmp_path / "home", database_url=None, api_preload=False,
                        api_search_max_k=37, _env_file=None)  # fmt: skip
    app = create_app(settings=settings)
    client = app.test_client()
    try:
        html = client.get("/").get_data(as_text=True)
        k_input = re.search(r'<input id="k" [^>]*>', html).group(0)
        assert 'max="37"' in k_input and 'value="24"' in k_input
        document = client.get("/api/v1/openapi.json").json
        fields = document["paths"]["/api/v1/search"]["post"]["requestBody"]["content"]
        assert fields["application/json"]["schema"]["properties"]["k"]["maximum"] == 37
        assert fields["multipart/form-data"]["schema"]["properties"]["k"]["maximum"] == 37
        assert client.get("/api/v1/stats").json["search"] == {"max_k": 37}
        refused = client.post("/api/v1/search?k=38", json={"item_id": "0" * 64})
        assert refused.status_code == 422
        assert refused.json["detail"] == "k must be from 1 to 37, got 38"
        with pytest.raises(ValueError, match="k must be an integer from 1 to 37"):
            app.extensions["lookalike"].engine.search(np.zeros(4, dtype=np.float32), k=38)
        assert searcher.MAX_K is MAX_K  # the searcher's depth bound is the setting's ceiling
    finally:
        app.extensions["lookalike"].close()


def test_a_small_largest_k_caps_the_pages_default(tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=None, api_preload=False,
                        api_search_max_k=5, _env_file=None)  # fmt: skip
    app = create_app(settings=settings)
    try:
        html = app.test_client().get("/").get_data(as_text=True)
        assert re.search(r'<input id="k" type="number" min="1" max="5" value="5">', html)
    finally:
        app.extensions["lookalike"].close()

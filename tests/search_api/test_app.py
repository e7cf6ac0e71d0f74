"""The app factory serves the installed web extensions (``lookalike.web``) beside the API,
never naming them, and a broken one costs only itself."""

import logging
from importlib.metadata import EntryPoint

from indexer import plugins
from search_api import create_app
from search_api.app import WEB_GROUP


def test_the_installed_web_ui_is_served_with_the_api(settings):
    client = create_app(settings=settings).test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Content-Security-Policy" in page.headers
    assert client.get("/healthz").json == {"status": "ok"}


def test_without_extensions_only_the_api(settings):
    client = create_app(settings=settings, extensions=False).test_client()
    assert client.get("/").status_code == 404
    assert "webui" not in client.application.blueprints
    assert client.get("/healthz").status_code == 200


def test_a_broken_web_extension_is_logged_and_the_api_still_serves(
    settings, monkeypatch, caplog
):
    broken = EntryPoint(name="shiny", value="no_such_ui:bp", group=WEB_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken])
    with caplog.at_level(logging.WARNING, logger="search_api.app"):
        client = create_app(settings=settings).test_client()
    assert "web extension 'shiny' (no_such_ui:bp)" in caplog.text
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 404

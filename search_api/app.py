"""The Flask app factory: settings, request limits, blueprints, one error shape, metrics.

Installed web extensions (blueprints in the ``lookalike.web`` entry-point group,
e.g. the web UI) are served with the API; the API never imports them by name.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, g, jsonify, request

from indexer import plugins
from indexer.config import Settings, load_settings
from indexer.engine import Lookalike
from search_api import errors, limits
from search_api.state import ApiState

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
WEB_GROUP = "lookalike.web"


def create_app(
    config: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    engine: Lookalike | None = None,
    extensions: bool = True,
) -> Flask:
    """Build the app. ``config`` overrides Flask's; ``settings`` default to the environment.

    ``engine`` lets tests (and an embedding program) share an already open engine.
    With ``api_preload`` the model and the current index load here, before the
    first request. ``extensions=False`` leaves out the ``lookalike.web`` blueprints.
    """
    settings = settings or (engine.settings if engine is not None else load_settings())
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.api_max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=settings.api_max_form_memory_bytes,
        MAX_FORM_PARTS=settings.api_max_form_parts,
        JSON_SORT_KEYS=False,
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    if config:
        app.config.update(config)

    state = ApiState(settings, engine)
    app.extensions["lookalike"] = state
    if settings.api_preload:
        state.preload()

    errors.register(app)
    from search_api import explain, health, items, jobs, maps, openapi, search

    app.register_blueprint(health.bp)
    app.register_blueprint(search.bp, url_prefix=API_PREFIX)
    app.register_blueprint(explain.bp, url_prefix=API_PREFIX)
    app.register_blueprint(items.bp, url_prefix=API_PREFIX)
    app.register_blueprint(jobs.bp, url_prefix=API_PREFIX)
    app.register_blueprint(maps.bp, url_prefix=API_PREFIX)
    app.register_blueprint(health.api_bp, url_prefix=API_PREFIX)
    app.register_blueprint(openapi.bp, url_prefix=API_PREFIX)
    if extensions:
        _register_web_extensions(app)

    @app.get("/openapi.json")
    def root_openapi():
        return jsonify(openapi.app_document())

    @app.before_request
    def _start_clock() -> None:
        g.started = time.perf_counter()

    limits.install(app, settings)  # after the clock: a refused request is counted too

    @app.after_request
    def _count(response):
        started = g.get("started")
        if started is not None:
            route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            state.metrics.request(
                request.method, route, response.status_code, time.perf_counter() - started
            )
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _register_web_extensions(app: Flask) -> None:
    loaded, failed = plugins.load_all(plugins.entry_points(WEB_GROUP))
    for _, blueprint in loaded:
        app.register_blueprint(blueprint)
    for failure in failed:
        log.warning("web extension %s not loaded; serving the API without it", failure)

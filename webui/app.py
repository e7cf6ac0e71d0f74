"""The app served to users: the JSON API (``search_api``) with the web UI at ``/``.

The API serves the UI by itself when this package is installed (``pyproject.toml``
declares :data:`webui.views.bp` in the ``lookalike.web`` entry-point group);
:func:`create_app` makes sure of it even where that metadata is missing.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from indexer.config import Settings
from indexer.engine import Lookalike
from search_api import create_app as create_api
from webui.views import bp


def create_app(
    config: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    engine: Lookalike | None = None,
) -> Flask:
    """The API app (same arguments as :func:`search_api.create_app`) plus the UI pages."""
    app = create_api(config, settings=settings, engine=engine)
    if bp.name not in app.blueprints:
        app.register_blueprint(bp)
    return app

"""The HTTP API: ``create_app()`` builds the Flask app; gunicorn or ``lookalike serve`` runs it.

``create_app`` is imported on first use, so that loading ``search_api.cli`` (for
``lookalike --help``) does not load Flask, the model and the index code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from search_api.app import create_app

        globals()[name] = create_app
        return create_app
    raise AttributeError(f"module 'search_api' has no attribute {name!r}")

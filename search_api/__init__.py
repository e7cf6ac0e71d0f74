"""The HTTP API: ``create_app()`` builds the Flask app; gunicorn or ``lookalike serve`` runs it."""

from search_api.app import create_app

__all__ = ["create_app"]

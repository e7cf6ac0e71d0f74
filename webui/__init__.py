"""The web UI: search, map and status pages served beside the API, talking to it over HTTP."""

from webui.app import create_app

__all__ = ["create_app"]

"""Run the API under gunicorn: ``lookalike serve`` here, ``deploy/gunicorn.conf.py`` in production.

Both take their options from :func:`gunicorn_options`, so they cannot drift apart.
Each worker process builds its own app (the model and index load in it before
it takes a request); the app is not preloaded in the master, because a forked
PyTorch runtime and faiss thread pools do not survive ``fork`` reliably (nor would
the workers' metrics reach the shared directory, see :mod:`search_api.multiproc`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from indexer.config import Settings
from search_api import multiproc

# The API with its installed web extensions (the web UI: the lookalike.web entry points).
WSGI_APP = "search_api:create_app()"


def gunicorn_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    options = {
        "bind": settings.api_bind,
        "workers": settings.api_workers,
        "worker_class": "gthread",
        "threads": settings.api_threads,
        "timeout": 120,  # a worker loading the model must not be killed as hung
        "graceful_timeout": 30,
        "keepalive": 5,
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
        "accesslog": "-",
        "preload_app": False,
    }
    options.update({k: v for k, v in overrides.items() if v is not None})
    options.update(metrics_hooks(settings.api_metrics_dir_for(options["bind"])))
    return options


def metrics_hooks(directory: Path) -> dict[str, Callable[..., None]]:
    """The master's hooks that let every worker's metrics add up in ``directory``."""

    def on_starting(server) -> None:  # in the master, before the first worker is forked
        multiproc.prepare(directory)

    def child_exit(server, worker) -> None:  # in the master, once a worker has exited
        multiproc.worker_exited(directory, worker.pid)

    return {"on_starting": on_starting, "child_exit": child_exit}


class _Server(BaseApplication):
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from gunicorn.util import import_app

        return import_app(WSGI_APP)


def serve(settings: Settings, **overrides: Any) -> None:
    """Serve until interrupted (blocks)."""
    _Server(gunicorn_options(settings, **overrides)).run()

"""Run the API under gunicorn: ``lookalike serve`` here, ``deploy/gunicorn.conf.py`` in production.

Both take their options from :func:`gunicorn_options`, so they cannot drift apart.
Each worker process builds its own app (the model and index load in it before
it takes a request); the app is not preloaded in the master, because a forked
PyTorch runtime and faiss thread pools do not survive ``fork`` reliably (nor would
the workers' metrics reach the shared directory, see :mod:`search_api.multiproc`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from indexer.config import Settings
from search_api import multiproc

# The API with its installed web extensions (the web UI: the lookalike.web entry points).
WSGI_APP = "search_api:create_app()"


class HeadDeadlineWorker(ThreadWorker):
    """gunicorn's gthread worker, with a deadline for each request's line and headers.

    gthread reads a request head in a pool thread and, once the first bytes are in,
    waits for the rest without a limit: a client that sends its headers a byte at a time
    (slowloris) holds the thread as long as it likes, and ``workers x threads`` such
    clients stall the server. Here the main loop (which wakes at least once a second)
    shuts down any connection whose head is not complete ``head_timeout`` seconds after
    a thread took it up: the thread's read ends, the thread serves the next connection.
    Bodies are not covered (the application reads them): see the README's deployment
    notes for what a front proxy must still do.
    """

    head_timeout: float = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._heads: dict[object, float] = {}  # connection -> deadline for its head
        self._heads_lock = threading.Lock()

    def handle(self, conn):  # in a pool thread
        with self._heads_lock:
            self._heads[conn] = time.monotonic() + self.head_timeout
        try:
            return super().handle(conn)
        finally:
            with self._heads_lock:
                self._heads.pop(conn, None)

    def handle_request(self, req, conn):  # in a pool thread, the head parsed
        with self._heads_lock:
            self._heads.pop(conn, None)
        return super().handle_request(req, conn)

    def murder_keepalived(self, force=False):  # in the main loop, every iteration
        super().murder_keepalived(force)
        now = time.monotonic()
        with self._heads_lock:
            late = [conn for conn, deadline in self._heads.items() if deadline <= now]
            for conn in late:
                del self._heads[conn]
        for conn in late:
            self.log.warning(
                "closing the connection from %s: no complete request head within %g s",
                conn.client, self.head_timeout,
            )  # fmt: skip
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # the thread's recv returns: no more data
            except OSError:
                pass  # closed meanwhile


def worker_class(settings: Settings) -> type[HeadDeadlineWorker]:
    return type("HeadDeadlineWorker", (HeadDeadlineWorker,),
                {"head_timeout": settings.api_head_timeout})  # fmt: skip


def gunicorn_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    options = {
        "bind": settings.api_bind,
        "workers": settings.api_workers,
        "worker_class": worker_class(settings),
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

"""Prometheus metrics of the API: the whole server's under gunicorn, one process's otherwise.

Request counts by method, route and status; request, search and explain latency as
histograms; the size of the index version served and whether the model is loaded.
Under gunicorn (:mod:`search_api.multiproc`) every worker writes its values to files
in the server's directory and a scrape, whichever worker answers it, sums them all
(prometheus_client's multiprocess mode). Without one (the Flask test client, a single
process) the metrics live in this object's own registry.
"""

from __future__ import annotations

from pathlib import Path

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from search_api import multiproc

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# What generate_latest writes (text format 0.0.4; newer clients' CONTENT_TYPE_LATEST is 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NOTHING_YET = object()  # no version recorded, not even "none"

# The same series in both modes: multiprocess mode has no *_created series.
prometheus_client.disable_created_metrics()


class Metrics:
    """The API's metrics; ``directory``: the server's multiprocess directory, if any."""

    def __init__(self, directory: Path | None = None) -> None:
        if directory is not None and values.ValueClass is values.MutexValue:
            raise RuntimeError(
                f"prometheus_client was imported before {multiproc.ENV} was set, so this "
                "worker's metrics would not reach the server's sums; import the app after "
                "the gunicorn master's on_starting hook (preload_app off)"
            )
        self.directory = directory
        # In multiprocess mode the values go to files and a scrape reads every worker's
        # files; registering them too would count this worker's twice.
        self._registry = CollectorRegistry() if directory is None else None
        own = {"registry": self._registry}
        self._requests = Counter(
            "lookalike_http_requests", "HTTP requests by method, route and status.",
            ["method", "route", "status"], **own,
        )  # fmt: skip
        self._latency = Histogram(
            "lookalike_http_request_duration_seconds", "Request latency by route.",
            ["route"], buckets=BUCKETS, **own,
        )  # fmt: skip
        self._search = Histogram(
            "lookalike_search_duration_seconds", "Search time (embedding and index).",
            ["query"], buckets=BUCKETS, **own,
        )  # fmt: skip
        self._explain = Histogram(
            "lookalike_explain_duration_seconds", "Explain time by method.",
            ["method"], buckets=BUCKETS, **own,
        )  # fmt: skip
        # Gauges across workers: the model counts as loaded when it is in every live
        # worker (livemin: a restarted worker still loading shows 0); the index size is
        # the one a worker swapped in last (livemostrecent: set when the version it holds
        # changes, so a worker that has not swapped yet does not bring the old size back).
        # live*: a dead worker's gauges leave the sums (child_exit, mark_process_dead).
        self._model_loaded = Gauge(
            "lookalike_model_loaded", "1 when the embedding model is loaded.",
            multiprocess_mode="livemin", **own,
        )  # fmt: skip
        self._index_vectors = Gauge(
            "lookalike_index_vectors", "Vectors in the index version the server serves.",
            multiprocess_mode="livemostrecent", **own,
        )  # fmt: skip
        self._serving: object = _NOTHING_YET

    @classmethod
    def for_process(cls) -> Metrics:
        """Shared with the server's other workers when a gunicorn master prepared a directory."""
        return cls(multiproc.active_dir())

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def searched(self, kind: str, seconds: float) -> None:
        self._search.labels(kind).observe(seconds)

    def explained(self, method: str, seconds: float) -> None:
        self._explain.labels(method).observe(seconds)

    def model_loaded(self) -> None:
        self._model_loaded.set(1)

    def serving(self, version: str | None, vectors: int) -> None:
        """The index version this process holds (None: none); recorded when it changes."""
        if version != self._serving:
            self._serving = version
            self._index_vectors.set(vectors)

    def render(self) -> bytes:
        if self.directory is None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.directory))
        return generate_latest(registry)

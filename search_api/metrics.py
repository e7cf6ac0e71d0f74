"""Prometheus text exposition, kept in-process (one set of series per worker process).

Request counts by method, route and status; request, search and explain latency
as histograms; the index size is read at scrape time.
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += seconds

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [
            f'{name}_bucket{{{labels}{sep}le="{bound}"}} {count}'
            for bound, count in zip(BUCKETS, self.counts, strict=True)
        ]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.total}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.6f}")
        out.append(f"{name}_count{{{labels}}} {self.total}")
        return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.search: dict[str, Histogram] = defaultdict(Histogram)
        self.explain: dict[str, Histogram] = defaultdict(Histogram)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            self.latency[route].observe(seconds)

    def searched(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.search[kind].observe(seconds)

    def explained(self, method: str, seconds: float) -> None:
        with self._lock:
            self.explain[method].observe(seconds)

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        lines = [
            "# HELP lookalike_http_requests_total HTTP requests by method, route and status.",
            "# TYPE lookalike_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), count in sorted(self.requests.items()):
                lines.append(
                    f'lookalike_http_requests_total{{method="{method}",route="{_label(route)}",'
                    f'status="{status}"}} {count}'
                )
            lines += [
                "# HELP lookalike_http_request_duration_seconds Request latency by route.",
                "# TYPE lookalike_http_request_duration_seconds histogram",
            ]
            for route, histogram in sorted(self.latency.items()):
                lines += histogram.lines(
                    "lookalike_http_request_duration_seconds", f'route="{_label(route)}"'
                )
            lines += [
                "# HELP lookalike_search_duration_seconds Search time (embedding and index).",
                "# TYPE lookalike_search_duration_seconds histogram",
            ]
            for kind, histogram in sorted(self.search.items()):
                lines += histogram.lines("lookalike_search_duration_seconds", f'query="{kind}"')
            lines += [
                "# HELP lookalike_explain_duration_seconds Explain time by method.",
                "# TYPE lookalike_explain_duration_seconds histogram",
            ]
            for method, histogram in sorted(self.explain.items()):
                lines += histogram.lines("lookalike_explain_duration_seconds",
                                         f'method="{method}"')
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"

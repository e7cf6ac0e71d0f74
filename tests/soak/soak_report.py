"""What the soak's clients saw: every answer, latency per minute, and the checks on answers.

An :class:`Answer` is one request: when it was sent and answered (seconds since the
soak began), its status, and for a search the index version it named and the items
it returned. The checks here read nothing but these answers and the times the
deletes returned; the catalog and index are reconciled in ``soak_reconcile``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Answer:
    kind: str  # "photo" or "id" (searches); "delete", "reindex", "job", ... (the rest)
    sent: float
    received: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, timed out)
    version: object = None  # the search answer's index_version, as sent
    items: tuple[str, ...] = ()
    query: str = ""  # the item id searched by, or the item whose photo was the query
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.received - self.sent


@dataclass
class Checks:
    """Named checks, each with the problems found (none: it passed) and what it counted."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)

    def check(self, name: str, problems: list[str]) -> None:
        self.problems.setdefault(name, []).extend(problems)

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def failed(self) -> dict[str, list[str]]:
        return {name: found for name, found in self.problems.items() if found}


SEARCH_KINDS = ("photo", "id")


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def minute_table(answers: list[Answer]) -> list[dict]:
    """Per minute of the soak (by the time a request was sent): count, p50 and p99 of each
    search kind, and the answers that were not 200."""
    rows: dict[int, dict] = {}
    for answer in answers:
        if answer.kind not in SEARCH_KINDS:
            continue
        row = rows.setdefault(int(answer.sent // 60), {k: [] for k in SEARCH_KINDS}
                              | {"not_ok": 0})  # fmt: skip
        row[answer.kind].append(answer.seconds)
        row["not_ok"] += answer.status != 200
    table = []
    for minute in sorted(rows):
        row = rows[minute]
        entry = {"minute": minute + 1, "not_200": row["not_ok"]}
        for kind in SEARCH_KINDS:
            entry[f"{kind}_n"] = len(row[kind])
            entry[f"{kind}_p50_ms"] = round(percentile_ms(row[kind], 50), 1)
            entry[f"{kind}_p99_ms"] = round(percentile_ms(row[kind], 99), 1)
        table.append(entry)
    return table


def format_table(table: list[dict]) -> str:
    header = (f"{'minute':>6} | {'photo n':>7} {'p50 ms':>8} {'p99 ms':>8} | "
              f"{'id n':>6} {'p50 ms':>8} {'p99 ms':>8} | {'not 200':>7}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for row in table:
        lines.append(
            f"{row['minute']:>6} | {row['photo_n']:>7} {row['photo_p50_ms']:>8.1f} "
            f"{row['photo_p99_ms']:>8.1f} | {row['id_n']:>6} {row['id_p50_ms']:>8.1f} "
            f"{row['id_p99_ms']:>8.1f} | {row['not_200']:>7}"
        )
    return "\n".join(lines)


def check_answers(checks: Checks, answers: list[Answer], deleted_at: dict[str, float],
                  allowed: dict[str, set[int]]) -> None:  # fmt: skip
    """No 5xx and nothing unexpected; one index version per search answer; no deleted
    item in an answer to a search sent after its delete returned.

    ``allowed``: the statuses each kind of request may get besides 200 (a search by an
    item id the soak deleted meanwhile: 404).
    """
    statuses = Counter((a.kind, a.status) for a in answers)
    checks.figures["answers"] = {f"{kind} {status}": n for (kind, status), n in
                                 sorted(statuses.items())}  # fmt: skip
    checks.check("no 5xx answers", [
        f"{a.kind} at {a.sent:.1f} s: {a.status} {a.error[:300]}" for a in answers
        if a.status >= 500
    ][:20])  # fmt: skip
    checks.check("no request went unanswered", [
        f"{a.kind} at {a.sent:.1f} s: {a.error[:300]}" for a in answers if a.status == 0
    ][:20])  # fmt: skip
    checks.check("no unexpected status", [
        f"{a.kind} at {a.sent:.1f} s ({a.query}): {a.status} {a.error[:300]}" for a in answers
        if 300 <= a.status < 500 and a.status not in allowed.get(a.kind, set())
        and not (a.status == 404 and a.query in deleted_at)
    ][:20])  # fmt: skip
    searches = [a for a in answers if a.kind in SEARCH_KINDS and a.status == 200]
    checks.check("every search answer names one index version", [
        f"{a.kind} at {a.sent:.1f} s named {a.version!r}" for a in searches
        if not (isinstance(a.version, str) and a.version)
    ][:20])  # fmt: skip
    checks.figures["index versions named"] = len({a.version for a in searches})
    served, in_flight = [], 0
    for a in searches:
        for item in a.items:
            gone = deleted_at.get(item)
            if gone is None or a.received <= gone:
                continue
            if a.sent > gone:
                served.append(f"{a.kind} sent at {a.sent:.2f} s returned {item}, "
                              f"deleted at {gone:.2f} s")  # fmt: skip
            else:
                in_flight += 1  # sent before the delete returned: either answer is right
    checks.check("no deleted item in a later answer", served[:20])
    checks.figures["deleted items in answers to searches in flight during the delete"] = in_flight

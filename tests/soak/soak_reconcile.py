"""The end of the soak: what the catalog and the index hold, by query, against what was sent.

Counters are not trusted: one SQL query joins every entry of the soak's jobs to the
item it became; the index's ids are read from its shards. Every photo sent must be
an indexed item that is in the index, a failure with a reason (the photos planned to
fail), or an item the soak deleted, gone from catalog, index and vector store. The
job's own counts (its API answer) must equal the ones counted here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import faiss
import numpy as np
import sqlalchemy as sa
from soak_report import Checks
from soak_site import Photo

from indexer.catalog import ItemStatus, vector_id_for
from indexer.catalog.schema import items_table, job_entries_table
from indexer.engine import Lookalike


@dataclass(frozen=True)
class Row:
    location: str
    state: str  # the entry's: done, failed, pending
    error: str | None
    item_id: str | None
    item_status: str | None  # None: no such item (any more)
    item_error: str | None
    vector_id: int | None


def job_rows(engine: Lookalike, job_id: int) -> list[Row]:
    e, i = job_entries_table.c, items_table.c
    stmt = (
        sa.select(e.location, e.state, e.error, e.item_id, i.status, i.error, i.vector_id)
        .select_from(job_entries_table.outerjoin(items_table, i.id == e.item_id))
        .where(e.job_id == job_id, e.kind != "remove")
        .order_by(e.id)
    )
    with engine.catalog.engine.connect() as conn:
        return [Row(*row) for row in conn.execute(stmt)]


def index_ids(engine: Lookalike) -> np.ndarray:
    loaded = engine.indexes.load()
    return np.concatenate([faiss.vector_to_array(shard.id_map) for shard in loaded.shards])


def outcome(row: Row, deleted: set[str]) -> tuple[str, str]:
    """(what became of a photo, why): indexed, failed, deleted, or lost."""
    if row.state == "failed":
        return ("failed", row.error) if row.error else ("lost", "failed without a reason")
    if row.state != "done":
        return "lost", f"entry still {row.state}"
    if row.item_status is None:
        return ("deleted", "") if row.item_id in deleted else ("lost", "item not in catalog")
    if row.item_status == ItemStatus.FAILED:
        return ("failed", row.item_error) if row.item_error else ("lost", "no reason")
    if row.item_status == ItemStatus.INDEXED:
        return "indexed", ""
    return "lost", f"item still {row.item_status}"


def reconcile(checks: Checks, engine: Lookalike, jobs: dict[int, list[Photo]],
              job_answers: dict[int, dict], deleted: set[str]) -> None:  # fmt: skip
    """``jobs``: each job's photos as sent; ``job_answers``: the API's answer for each job."""
    in_index = index_ids(engine)
    index_set = set(in_index.tolist())
    counts = engine.catalog.counts()
    checks.figures["catalog"] = counts
    checks.figures["index vectors"] = len(in_index)
    wanted_indexed: set[int] = set()
    outcomes: Counter = Counter()
    for job_id, photos in jobs.items():
        rows = job_rows(engine, job_id)
        by_url = {row.location: row for row in rows}
        problems = []
        if len(by_url) != len(rows) or set(by_url) != {p.url for p in photos}:
            problems.append(f"job {job_id}: {len(rows)} entries for {len(photos)} photos sent")
        for photo in photos:
            row = by_url.get(photo.url)
            if row is None:
                problems.append(f"{photo.url}: no entry")
                continue
            became, why = outcome(row, deleted)
            outcomes[(job_id, photo.kind.value, became)] += 1
            if became == "lost":
                problems.append(f"{photo.url} ({photo.kind}): {why}")
            elif became != "deleted" and became != photo.expected:
                problems.append(f"{photo.url} ({photo.kind}): {became} {why}, "
                                f"expected {photo.expected}")  # fmt: skip
            if became == "indexed":
                wanted_indexed.add(row.vector_id)
                if row.vector_id not in index_set:
                    problems.append(f"{photo.url}: indexed in the catalog, not in the index")
        checks.check("every photo indexed, failed with a reason, or deleted", problems[:20])
        checks.check(f"job {job_id}'s counts equal the catalog's", _job_counts(
            job_answers.get(job_id), rows, deleted))  # fmt: skip
    checks.figures["photos (job: kind -> became)"] = {
        f"{job}: {kind} -> {became}": n for (job, kind, became), n in sorted(outcomes.items())
    }
    checks.check("index holds each indexed item once, and nothing else", _index_problems(
        in_index, wanted_indexed, counts))  # fmt: skip
    checks.check(
        "deleted items are gone from catalog, index and vector store",
        _deleted_problems(engine, deleted, in_index),
    )


def _deleted_problems(engine: Lookalike, deleted: set[str], in_index: np.ndarray) -> list[str]:
    problems = []
    still = engine.catalog.get_many(deleted)
    if still:
        problems.append(f"{len(still)} deleted items still in the catalog")
    gone = np.array(sorted(vector_id_for(item_id) for item_id in deleted), dtype=np.int64)
    for where, ids in (("index", in_index), ("vector store", engine.vectors.ids())):
        if n := len(np.intersect1d(gone, ids)):
            problems.append(f"{n} deleted items in the {where}")
    return problems


def _job_counts(answer: dict | None, rows: list[Row], deleted: set[str]) -> list[str]:
    if answer is None:
        return ["no answer from the API for the job"]
    fetches = Counter(row.state for row in rows)
    items = Counter(row.item_status for row in rows if row.state == "done" and row.item_status)
    problems = []
    if answer.get("status") != "done":
        problems.append(f"job status {answer.get('status')!r}: {answer.get('summary')}")
    for state in ("pending", "done", "failed"):
        if answer["fetches"].get(state, 0) != fetches.get(state, 0):
            problems.append(f"fetches {state}: API {answer['fetches'].get(state, 0)}, "
                            f"counted {fetches.get(state, 0)}")  # fmt: skip
    for status in ItemStatus:
        if answer["items"].get(status, 0) != items.get(status, 0):
            problems.append(f"items {status}: API {answer['items'].get(status, 0)}, "
                            f"counted {items.get(status, 0)}")  # fmt: skip
    purged = sum(1 for row in rows if row.state == "done" and row.item_status is None)
    if purged != sum(1 for row in rows if row.state == "done" and row.item_id in deleted):
        problems.append(f"{purged} done entries lost their item, not all of them deleted")
    return problems


def _index_problems(in_index: np.ndarray, wanted: set[int], counts: dict) -> list[str]:
    problems = []
    if len(in_index) != len(set(in_index.tolist())):
        problems.append(f"{len(in_index) - len(set(in_index.tolist()))} duplicate ids")
    extra, missing = set(in_index.tolist()) - wanted, wanted - set(in_index.tolist())
    if extra:
        problems.append(f"{len(extra)} vectors of no indexed photo in the index")
    if missing:
        problems.append(f"{len(missing)} indexed photos missing from the index")
    if counts[ItemStatus.INDEXED] != len(wanted):
        problems.append(f"catalog has {counts[ItemStatus.INDEXED]} indexed items, "
                        f"the jobs {len(wanted)}")  # fmt: skip
    for status in (ItemStatus.STORED, ItemStatus.EMBEDDED, ItemStatus.DELETED):
        if counts[status]:
            problems.append(f"{counts[status]} items still {status}")
    return problems

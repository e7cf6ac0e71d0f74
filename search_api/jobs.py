"""``GET /api/v1/jobs``: recent jobs; ``GET /api/v1/jobs/<id>``: one job's progress.

Progress is counted from the job's rows in the catalog.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from indexer import jobs
from indexer.catalog import JobStatus
from search_api import params
from search_api.auth import read_access
from search_api.errors import ApiError
from search_api.search import state

bp = Blueprint("jobs", __name__)

MAX_JOB_ID = 2**63 - 1
MAX_LISTED = 100
LISTED_FAILURES = 5  # a list shows a few reasons; the job's own page shows up to 100


def job_body(progress: jobs.JobProgress) -> dict:
    body = progress.as_dict()
    body["complete"] = progress.complete
    body["summary"] = progress.summary()
    return body


@bp.get("/jobs")
@read_access
def job_list():
    limit = params.integer("limit", params.raw("limit", None), default=20, low=1,
                           high=MAX_LISTED)  # fmt: skip
    statuses = _statuses(params.raw("status", None))
    catalog = state().engine.catalog
    listed = []
    for job in catalog.jobs(limit=limit, statuses=statuses):
        try:
            listed.append(job_body(jobs.progress(catalog, job.id, failures=LISTED_FAILURES)))
        except LookupError:  # deleted between the two reads
            continue
    return jsonify(jobs=listed)


def _statuses(value: str | None) -> list[str] | None:
    """``queued,running`` → a list of job statuses; None (every status) when not given."""
    if value is None:
        return None
    allowed = [status.value for status in JobStatus]
    names = value.split(",")
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ApiError(
            422, f"status must be a comma-separated list of {', '.join(allowed)}; "
            f"got {', '.join(repr(name[:40]) for name in unknown[:3])}", field="status",
        )  # fmt: skip
    return list(dict.fromkeys(names))


@bp.get("/jobs/<int:job_id>")
@read_access
def job(job_id: int):
    if job_id > MAX_JOB_ID:  # beyond a 64-bit row id: the database would overflow
        raise ApiError(404, f"no job {job_id}", field="job_id")
    try:
        progress = jobs.progress(state().engine.catalog, job_id, failures=100)
    except LookupError:
        raise ApiError(404, f"no job {job_id}", field="job_id") from None
    return jsonify(job_body(progress))

"""``GET /api/v1/jobs/<id>``: a job's progress, counted from its rows in the catalog."""

from __future__ import annotations

from flask import Blueprint, jsonify

from indexer import jobs
from search_api.auth import read_access
from search_api.errors import ApiError
from search_api.search import state

bp = Blueprint("jobs", __name__)

MAX_JOB_ID = 2**63 - 1


@bp.get("/jobs/<int:job_id>")
@read_access
def job(job_id: int):
    if job_id > MAX_JOB_ID:  # beyond a 64-bit row id: the database would overflow
        raise ApiError(404, f"no job {job_id}", field="job_id")
    try:
        progress = jobs.progress(state().engine.catalog, job_id, failures=100)
    except LookupError:
        raise ApiError(404, f"no job {job_id}", field="job_id") from None
    body = progress.as_dict()
    body["complete"] = progress.complete
    body["summary"] = progress.summary()
    return jsonify(body)

"""``GET /api/v1/jobs``: recent jobs filtered by status, each with its progress."""

from __future__ import annotations

import pytest

from indexer import jobs
from indexer.catalog import Catalog
from indexer.config import Settings
from indexer.sample import write_sample_catalogue
from search_api import create_app


@pytest.fixture
def home(tmp_path):
    """An API without a model (jobs need none) and a catalog with three jobs."""
    settings = Settings(home=tmp_path / "home", database_url=None, api_preload=False,
                        _env_file=None)  # fmt: skip
    folder = tmp_path / "catalogue"
    write_sample_catalogue(folder, products=2, shots=2, seed=1)
    catalog = Catalog(settings)
    made = [jobs.submit_source(catalog, settings, folder, register=False) for _ in range(3)]
    jobs.start_job(catalog, made[1].id)  # the stage a worker runs first
    app = create_app(settings=settings)
    yield app.test_client(), catalog, [job.id for job in made]
    app.extensions["lookalike"].close()
    catalog.close()


def test_jobs_newest_first_with_progress(home):
    client, _, ids = home
    body = client.get("/api/v1/jobs").get_json()
    listed = body["jobs"]
    assert [job["id"] for job in listed] == ids[::-1]
    assert [job["status"] for job in listed] == ["queued", "running", "queued"]
    first = listed[0]
    assert first["total"] == 4 and first["fetches"]["pending"] == 4
    assert first["complete"] is False and first["summary"] == "0/4 fetched, 0 indexed, 0 failed"


def test_jobs_filtered_by_status_and_limited(home):
    client, _, ids = home
    running = client.get("/api/v1/jobs?status=running").get_json()["jobs"]
    assert [job["id"] for job in running] == [ids[1]]
    both = client.get("/api/v1/jobs?status=queued,running&limit=2").get_json()["jobs"]
    assert [job["id"] for job in both] == [ids[2], ids[1]]
    assert client.get("/api/v1/jobs?status=done").get_json() == {"jobs": []}


def test_failures_are_listed_a_few_per_job(home, tmp_path):
    client, catalog, _ = home
    settings = Settings(home=tmp_path / "home", database_url=None, _env_file=None)
    folder = tmp_path / "vanishing"
    write_sample_catalogue(folder, products=4, shots=2, seed=2)
    job = jobs.submit_source(catalog, settings, folder, register=False)
    for image in folder.rglob("*.jpg"):
        image.unlink()  # gone before a worker gets to them: every fetch fails
    intake = jobs.Intake.from_settings(settings, catalog)
    for chunk in jobs.start_job(catalog, job.id):
        jobs.fetch_chunk(intake, job.id, chunk)
    listed = client.get("/api/v1/jobs?limit=1").get_json()["jobs"][0]
    assert listed["id"] == job.id and listed["failed"] == 8
    assert len(listed["failures"]) == 5
    assert all(f["location"].startswith(str(folder)) and f["reason"] for f in listed["failures"])
    assert len(client.get(f"/api/v1/jobs/{job.id}").get_json()["failures"]) == 8


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=finished", "status"), ("status=", "status"), ("status=queued,", "status"),
     ("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit")],
)  # fmt: skip
def test_bad_filters_are_refused_with_the_field_named(home, query, field):
    client, _, _ = home
    response = client.get(f"/api/v1/jobs?{query}")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["field"] == field
    if field == "status":
        assert "queued, running, done, failed, skipped" in problem["detail"]


def test_a_read_key_guards_the_list(tmp_path):
    settings = Settings(home=tmp_path / "home", database_url=None, api_preload=False,
                        api_key="k" * 16, api_read_key_required=True, _env_file=None)  # fmt: skip
    app = create_app(settings=settings)
    client = app.test_client()
    assert client.get("/api/v1/jobs").status_code == 401
    ok = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {'k' * 16}"})
    assert ok.status_code == 200 and ok.get_json() == {"jobs": []}
    app.extensions["lookalike"].close()

"""Redis (the broker) down while the API accepts an upload, a source or a re-index.

The API runs in this process on a private redis-server (a real connection), a
real worker process consumes from it. With Redis stopped a write answers 503
``problem+json`` with ``Retry-After``, and nothing is half-stored: the job
recorded for it is failed with the reason (no queued job that would never run),
its manifest is gone, no item exists and a crawled site is not registered. With
Redis back the same upload is accepted and the worker takes it in: one item.
A Redis that hangs instead (SIGSTOP) is given up on within seconds, the same way
(should it take the message in late after all, the failed job starts nothing:
``tests/indexer/jobs/test_submit.py``).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time

import images_factory
import pytest
from worker_harness import WAIT

from search_api import create_app

KEY = "broker-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def setup(make_setup, private_redis):
    return make_setup(broker_url=private_redis.url, api_key=KEY, api_preload=False,
                      api_ready_retry_after=7)  # fmt: skip


def upload(client, photo: bytes):
    return client.post(
        "/api/v1/items",
        data={"images": [(io.BytesIO(photo), "mug.jpg")], "product_id": "mug-1"},
        headers=AUTH, content_type="multipart/form-data",
    )  # fmt: skip


def assert_unavailable(response) -> int:
    """A 503 problem with Retry-After; returns the id of the job recorded as failed."""
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "7"
    body = response.json
    assert body["status"] == 503 and "nothing was queued" in body["detail"]
    assert "127.0.0.1" not in body["detail"]  # the broker's address stays in the log
    return int(re.search(r"job (\d+) is recorded as failed", body["detail"])[1])


def manifests(setup) -> list[str]:
    folder = setup.home / "uploads" / "manifests"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_redis_down_while_the_api_accepts_an_upload_is_a_503_and_nothing_half_stored(
    setup, private_redis, procs
):
    procs.worker(setup)  # running all along: it reconnects when Redis is back
    app = create_app(settings=setup.settings)
    client = app.test_client()
    photo = images_factory.jpeg_bytes(seed=41)
    private_redis.kill()

    failed_id = assert_unavailable(upload(client, photo))
    failed = client.get(f"/api/v1/jobs/{failed_id}").json
    assert failed["status"] == "failed" and "not queued" in failed["message"]
    assert manifests(setup) == []  # the failed job's manifest is removed
    with setup.catalog() as catalog:
        assert sum(catalog.counts().values()) == 0  # no item of any status
        assert [j.id for j in catalog.jobs(limit=None, statuses=["queued", "running"])] == []

    private_redis.start()
    accepted = upload(client, photo)  # the client's retry after Retry-After
    assert accepted.status_code == 202, accepted.json
    job_url = accepted.json["job_url"]
    deadline = time.monotonic() + WAIT
    while not (job := client.get(job_url).json)["complete"]:
        assert time.monotonic() < deadline, f"{job}\n{procs.logs()}"
        time.sleep(0.3)
    assert job["status"] == "done" and job["items"]["indexed"] == 1, job
    with setup.catalog() as catalog:
        assert sum(catalog.counts().values()) == 1  # one item, not two
        assert catalog.get_job(failed_id).status == "failed"  # the refused one never ran
    hit = client.post(
        "/api/v1/search?k=1", data={"image": (io.BytesIO(photo), "q.jpg")},
        content_type="multipart/form-data",
    ).json["results"][0]  # fmt: skip
    assert hit["product_id"] == "mug-1" and hit["score"] > 0.99


def test_redis_down_while_the_api_accepts_a_source_or_a_reindex_is_a_503(setup, private_redis):
    client = create_app(settings=setup.settings).test_client()
    private_redis.kill()
    json_headers = {**AUTH, "Content-Type": "application/json"}

    urls = client.post("/api/v1/sources", headers=json_headers,
                       data=json.dumps({"urls": ["http://127.0.0.1:9/a.jpg"]}))  # fmt: skip
    site = client.post("/api/v1/sources", headers=json_headers,
                       data=json.dumps({"url": "http://127.0.0.1:9/shop/"}))  # fmt: skip
    manifest = client.post(
        "/api/v1/sources", headers=AUTH, content_type="multipart/form-data",
        data={"manifest": (io.BytesIO(b"image_url\nhttp://127.0.0.1:9/b.jpg\n"), "m.csv")},
    )  # fmt: skip
    reindex = client.post("/api/v1/reindex", headers=AUTH)
    failed = [assert_unavailable(r) for r in (urls, site, manifest, reindex)]

    assert manifests(setup) == []
    with setup.catalog() as catalog:
        assert [catalog.get_job(i).status for i in failed] == ["failed"] * 4
        assert catalog.jobs(limit=None, statuses=["queued", "running"]) == []
        assert catalog.sources() == []  # the site was not registered for re-crawls


def test_redis_hung_while_the_api_accepts_an_upload_is_a_503_and_its_late_message_does_nothing(
    setup, private_redis, procs
):
    worker = procs.worker(setup)
    client = create_app(settings=setup.settings).test_client()
    photo = images_factory.jpeg_bytes(seed=43)
    os.kill(private_redis.process.pid, signal.SIGSTOP)  # up, but answering nothing
    try:
        failed_id = assert_unavailable(upload(client, photo))
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)

    accepted = upload(client, photo)
    assert accepted.status_code == 202, accepted.json
    deadline = time.monotonic() + WAIT
    while not (job := client.get(accepted.json["job_url"]).json)["complete"]:
        assert time.monotonic() < deadline, f"{job}\n{procs.logs()}"
        time.sleep(0.3)
    assert job["status"] == "done" and job["items"]["indexed"] == 1, job
    failed = client.get(f"/api/v1/jobs/{failed_id}").json
    assert failed["status"] == "failed", worker.text()[-3000:]
    assert failed["fetches"] == {"pending": 1, "done": 0, "failed": 0}  # never started
    with setup.catalog() as catalog:
        assert sum(catalog.counts().values()) == 1

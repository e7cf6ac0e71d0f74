"""End to end: a real gunicorn serving the API, a real worker, a real Redis.

Upload images over HTTP, wait for the job through the API, then search by one of
them and find it first; the request limits hold on the real server too.
"""

from __future__ import annotations

import json
import time

import images_factory
import pytest
import urllib3
from gunicorn_harness import DEPLOY_CONFIG, GUNICORN, free_port, wait_until_up
from worker_harness import WAIT  # on sys.path through conftest.py, with its fixtures

KEY = "e2e-key-0123456789abcdef"


@pytest.mark.slow
def test_upload_wait_search_through_gunicorn_redis_and_a_worker(
    make_setup, procs, redis_url, redis_prefix
):
    port = free_port()
    setup = make_setup(
        broker_url=redis_url, broker_key_prefix=redis_prefix, api_key=KEY,
        api_bind=f"127.0.0.1:{port}", api_workers=1, api_threads=4,
        api_max_upload_bytes=2_000_000,
    )  # fmt: skip
    procs.worker(setup, "--concurrency", "1")
    api = procs.start(
        "gunicorn", [GUNICORN, "-c", DEPLOY_CONFIG],
        setup.env(), setup.home.parent,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager()
    wait_until_up(http, base, api)
    assert http.request("GET", f"{base}/readyz").status == 503  # no index yet

    photos = {f"p{seed}": images_factory.jpeg_bytes(seed=seed) for seed in range(8)}
    fields = [("images", (f"{name}.jpg", data, "image/jpeg")) for name, data in photos.items()]
    fields.append(("metadata", json.dumps([{"product_id": name} for name in photos])))
    refused = http.request("POST", f"{base}/api/v1/items", fields=fields)
    assert refused.status == 401
    response = http.request(
        "POST", f"{base}/api/v1/items", fields=fields, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert response.status == 202, response.data
    job_url = base + response.json()["job_url"]

    deadline = time.monotonic() + WAIT
    while not (job := http.request("GET", job_url).json())["complete"]:
        assert time.monotonic() < deadline, f"{job}\n{procs.logs()}"
        time.sleep(0.3)
    assert job["items"]["indexed"] == 8

    search = http.request(
        "POST", f"{base}/api/v1/search?k=3",
        fields={"image": ("q.jpg", photos["p5"], "image/jpeg")},
    )  # fmt: skip
    assert search.status == 200, search.data
    body = search.json()
    assert body["results"][0]["product_id"] == "p5"
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert body["model_version"] == "tiny-test"

    by_item = http.request(
        "POST", f"{base}/api/v1/search",
        body=json.dumps({"item_id": body["results"][0]["item_id"]}),
        headers={"Content-Type": "application/json"},
    ).json()  # fmt: skip
    assert by_item["results"][0]["product_id"] == "p5"
    assert http.request("GET", f"{base}/readyz").status == 200

    def chunks():
        for _ in range(40):
            yield b"x" * 65536  # 2.6 MB, no Content-Length

    too_big = http.request(
        "POST", f"{base}/api/v1/search", body=chunks(),
        headers={"Content-Type": "application/json"}, chunked=True,
    )  # fmt: skip
    assert too_big.status == 413
    assert too_big.headers["Content-Type"] == "application/problem+json"

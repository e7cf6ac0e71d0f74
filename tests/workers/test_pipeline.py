"""A manifest of image URLs through real `lookalike worker` processes until it is searchable.

Once with Redis (and every message delivered twice), once with the embedded
transport (no server at all). The job is submitted with the CLI before any worker
runs, so it also proves that queued work waits for a worker.
"""

from __future__ import annotations

import json
import re
import time

import faiss
import images_factory
import numpy as np
import pytest
import redis
from worker_harness import WAIT, wait_for_job

from indexer.cli import main
from indexer.engine import Lookalike
from workers import client


def submit(capsys, *args: str) -> int:
    assert main(["ingest", *args, "--background"]) == 0
    out = capsys.readouterr().out
    return int(re.search(r"job (\d+) queued", out).group(1))


def assert_one_vector_per_item(settings, expected: int) -> None:
    with Lookalike.open(settings) as engine:
        ids, _ = engine.vectors.load()
        loaded = engine.indexes.load()
        in_index = np.concatenate([faiss.vector_to_array(s.id_map) for s in loaded.shards])
        assert len(ids) == len(set(ids)) == expected
        assert len(in_index) == len(set(in_index)) == expected
        assert set(in_index) == set(ids)
        assert engine.catalog.counts()["indexed"] == expected
        for seed in (0, 77, 199):
            hit = engine.search(images_factory.jpeg_bytes(seed=seed), k=1)[0]
            assert hit.item.product_id == f"p{seed}" and hit.score == pytest.approx(1, abs=1e-3)


def wait_until_drained(url: str, prefix: str, queues) -> None:
    """Every queue empty and nothing delivered-but-unacknowledged (late acks: still running)."""
    client_ = redis.Redis.from_url(url)
    deadline = time.monotonic() + WAIT
    while any(client_.llen(f"{prefix}{q}") for q in queues) or client_.hlen(f"{prefix}unacked"):
        assert time.monotonic() < deadline, "the workers never drained the queues"
        time.sleep(0.2)
    client_.close()


@pytest.mark.parametrize("broker", ["redis", "embedded"])
def test_a_manifest_of_200_urls_ends_up_searchable(
    broker, make_setup, shop, procs, request, tmp_path, capsys, monkeypatch
):
    values = {}
    if broker == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        values = {"broker_url": request.getfixturevalue("redis_url"),
                  "broker_key_prefix": prefix}
    setup = make_setup(**values)
    setup.apply(monkeypatch)
    manifest = shop.manifest(tmp_path / "catalogue.csv", range(200))
    job_id = submit(capsys, str(manifest))
    if broker == "redis":  # every message twice: the start, so every chunk, embed and index
        client.send(setup.settings, "start", job_id)

    procs.worker(setup)
    state = wait_for_job(setup, job_id, procs)
    assert state.job.status == "done", procs.logs()
    assert state.fetches == {"pending": 0, "done": 200, "failed": 0}
    assert state.items["indexed"] == 200 and state.failed == 0
    if broker == "redis":
        wait_until_drained(values["broker_url"], prefix, ("ingest", "embed", "index"))
        assert procs.started[0].text().count("lookalike.fetch_chunk[") >= 16  # 8 chunks, twice
    assert_one_vector_per_item(setup.settings, 200)

    assert main(["jobs", str(job_id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["items"]["indexed"], shown["failures"]) == ("done", 200, [])


def product_page(n: int) -> bytes:
    return (
        f"<!DOCTYPE html><html><head><title>Product {n}</title>"
        f'<meta property="og:type" content="product">'
        f'<meta property="og:image" content="/img/{n}.jpg"></head>'
        f'<body><h1>Product {n}</h1><img src="/logo.png" class="logo"></body></html>'
    ).encode()


@pytest.mark.parametrize("broker", ["redis", "embedded"])
def test_a_crawled_site_ends_up_searchable(
    broker, make_setup, shop, procs, request, capsys, monkeypatch
):
    """Home → category → product pages with og:image; an off-site link is not followed."""
    values = {}
    if broker == "redis":
        values = {"broker_url": request.getfixturevalue("redis_url"),
                  "broker_key_prefix": request.getfixturevalue("redis_prefix")}
    setup = make_setup(**values)
    setup.apply(monkeypatch)
    products = (0, 77, 199, 5, 6, 7)
    server = shop.server
    shop.urls(products)  # /img/N.jpg
    links = "".join(f'<a href="/p/{n}.html">product {n}</a>' for n in products)
    server.serve("/", b'<html><body><a href="/shoes/">shoes</a>'
                 b'<a href="http://elsewhere.invalid/">partner</a></body></html>', "text/html")
    server.serve("/shoes/", f"<html><body>{links}</body></html>".encode(), "text/html")
    for n in products:
        server.serve(f"/p/{n}.html", product_page(n), "text/html")

    job_id = submit(capsys, server.url("/"))
    procs.worker(setup)
    state = wait_for_job(setup, job_id, procs)
    assert state.job.status == "done", procs.logs()
    assert state.items["indexed"] == len(products) and state.failed == 0
    with Lookalike.open(setup.settings) as engine:
        for n in (0, 77, 199):
            hit = engine.search(images_factory.jpeg_bytes(seed=n), k=1)[0]
            assert hit.score == pytest.approx(1, abs=1e-3)
            assert (hit.item.title, hit.item.page_url) == (f"Product {n}",
                                                          server.url(f"/p/{n}.html"))
        ids, _ = engine.vectors.load()
        assert len(ids) == len(set(ids)) == len(products)

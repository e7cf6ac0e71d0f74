"""A new index version is switched in under load: no request fails, none mixes versions."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from search_api import create_app

pytestmark = pytest.mark.slow


def test_50_concurrent_searches_while_a_new_version_is_switched_in(fresh, writer):
    app = create_app(engine=fresh)
    old = fresh.indexes.current_version()
    items = fresh.catalog.items_with_status("indexed")
    start = threading.Barrier(11)

    def search(n: int):
        if n < 10:
            start.wait()
        client = app.test_client()
        response = client.post("/api/v1/search", json={"item_id": items[n % len(items)].id})
        return response.status_code, response.json

    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(search, n) for n in range(50)]
        start.wait()  # the first ten are in flight
        new = writer.build_index(shards=2)
        results = [future.result() for future in futures]

    assert new != old
    assert [status for status, _ in results] == [200] * 50
    versions = {body["index_version"] for _, body in results}
    assert versions <= {old, new}
    for n, (_, body) in enumerate(results):
        # Each response is whole: the query item first, every hit from one index.
        assert body["results"][0]["item_id"] == items[n % len(items)].id
        assert len(body["results"]) == 10

    after = app.test_client().post("/api/v1/search", json={"item_id": items[0].id}).json
    assert after["index_version"] == new
    assert app.test_client().get("/api/v1/stats").json["serving_version"] == new

"""A delete through the API while a re-index runs: the deleted item never comes back.

The re-index runs here (as `lookalike index reindex` does) and reads its vectors
*before* the delete lands; the API process marks the item deleted, tombstones its
vector and queues the index change on the single writer, a real `lookalike worker`
on the ``index`` queue. Once with the worker applying the delete while the re-index
is still building, once with the worker started only after the re-index switched
versions; on Redis and on the embedded transport.
"""

from __future__ import annotations

import io
import time

import faiss
import images_factory
import pytest
from worker_harness import WAIT

from indexer import jobs
from indexer.catalog import vector_id_for
from indexer.engine import Lookalike
from search_api.app import create_app

API_KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def index_ids(engine: Lookalike) -> set[int]:
    loaded = engine.indexes.load()
    return {int(v) for shard in loaded.shards for v in faiss.vector_to_array(shard.id_map)}


def wait_until_purged(setup, item_id: str, procs) -> None:
    deadline = time.monotonic() + WAIT
    with setup.catalog() as catalog:
        while catalog.get(item_id) is not None:
            assert time.monotonic() < deadline, f"the writer never applied it:\n{procs.logs()}"
            time.sleep(0.2)


@pytest.mark.parametrize("writer", ["during", "after"])
@pytest.mark.parametrize("broker", ["redis", "embedded"])
def test_an_item_deleted_while_a_reindex_builds_never_returns(
    broker, writer, make_setup, procs, request, tmp_path, monkeypatch
):
    values = {"api_key": API_KEY}
    if broker == "redis":
        values |= {"broker_url": request.getfixturevalue("redis_url"),
                   "broker_key_prefix": request.getfixturevalue("redis_prefix")}
    setup = make_setup(**values)
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(12):
        (photos / f"p{seed}.jpg").write_bytes(images_factory.jpeg_bytes(seed=seed))
    doomed_bytes = images_factory.jpeg_bytes(seed=5)

    reindexer = Lookalike.open(setup.settings)  # this process: the inline re-index
    api_engine = Lookalike.open(setup.settings)  # the API process
    try:
        assert reindexer.ingest(photos).items["indexed"] == 12
        api = create_app(engine=api_engine).test_client()
        doomed = reindexer.search(doomed_bytes, k=1)[0].item
        if writer == "during":
            procs.worker(setup, "--queues", "index", "--concurrency", "1")

        read_vectors = reindexer.vectors.load

        def load_then_delete():
            stale = read_vectors()  # the re-index has its vectors: now the delete lands
            assert api.delete(f"/api/v1/items/{doomed.id}", headers=AUTH).status_code == 204
            found = api.post("/api/v1/search", json={"item_id": doomed.id})
            assert found.status_code == 404  # gone for every search at once
            if writer == "during":
                wait_until_purged(setup, doomed.id, procs)  # the writer took it out of CURRENT
            return stale

        monkeypatch.setattr(reindexer.vectors, "load", load_then_delete)
        before = reindexer.indexes.current_version()
        outcome = jobs.reindex(reindexer, jobs.new_reindex_job(reindexer.catalog).id)
        monkeypatch.undo()
        assert outcome.status == "done" and outcome.version != before
        if writer == "after":
            procs.worker(setup, "--queues", "index", "--concurrency", "1")
            wait_until_purged(setup, doomed.id, procs)

        assert vector_id_for(doomed.id) not in index_ids(reindexer)
        assert len(index_ids(reindexer)) == 11
        assert vector_id_for(doomed.id) not in reindexer.vectors.ids()
        hits = reindexer.search(doomed_bytes, k=12)
        assert doomed.id not in {hit.item.id for hit in hits} and len(hits) == 11
        assert api.get(f"/api/v1/items/{doomed.id}").status_code == 404
        upload = {"image": (io.BytesIO(doomed_bytes), "q.jpg"), "k": "12"}
        results = api.post("/api/v1/search", data=upload, content_type="multipart/form-data")
        assert doomed.id not in {r["item_id"] for r in results.json["results"]}
        counts = reindexer.catalog.counts()
        assert (counts["indexed"], counts["deleted"]) == (11, 0)
        assert reindexer.search(doomed_bytes, k=1)[0].score < 0.999  # another photo now
    finally:
        reindexer.close()
        api_engine.close()

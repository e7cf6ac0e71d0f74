"""POST /api/v1/explain: the query as /search takes it, plus result_item_id; the same
error shapes as /search, and 404 naming result_item_id for an item that is not there."""

import io

import pytest

from search_api import create_app

pytestmark = pytest.mark.slow


def shot_bytes(sample_folder, index: int = 0) -> bytes:
    return sorted(sample_folder.rglob("*.jpg"))[index].read_bytes()


def explain_upload(client, data: bytes, **form):
    return client.post(
        "/api/v1/explain",
        data={"image": (io.BytesIO(data), "query.jpg"), **form},
        content_type="multipart/form-data",
    )


def search_upload(client, data: bytes, **form):
    return client.post("/api/v1/search", data={"image": (io.BytesIO(data), "query.jpg"), **form},
                       content_type="multipart/form-data")  # fmt: skip


def test_an_uploaded_photo_and_a_result(client, indexed, sample_folder):
    query = shot_bytes(sample_folder, 4)
    hits = search_upload(client, query, k="12").json["results"]
    for hit in (hits[1], hits[-1]):
        response = explain_upload(client, query, result_item_id=hit["item_id"])
        assert response.status_code == 200, response.json
        body = response.json
        assert set(body) == {"score", "search_score", "method", "query_heatmap", "result_heatmap",
                             "query_image", "result_image", "model_version",
                             "result_item_id", "took_ms"}  # fmt: skip
        assert body["method"] == "decomposition"
        assert body["model_version"] == indexed.model.version
        assert body["result_item_id"] == hit["item_id"] and body["took_ms"] > 0
        # The search's vectors here may come from bf16 (OpenVINO bf16 on this EPYC: up to
        # 0.08 off PyTorch's fp32 cosine); exact against fp32 vectors: see
        # tests/indexer/explain/test_decompose.py.
        assert body["score"] == pytest.approx(hit["score"], abs=0.1)
        assert body["search_score"] == pytest.approx(hit["score"], abs=1e-6)
        for name in ("query_heatmap", "result_heatmap"):
            assert len(body[name]) == 7 and all(len(row) == 7 for row in body[name])
            assert sum(map(sum, body[name])) == pytest.approx(body["score"], abs=1e-4)
        assert body["query_image"] == {"width": 320, "height": 320,
                                       "box": [20.0, 20.0, 300.0, 300.0]}  # fmt: skip
        assert body["result_image"]["box"] == [20.0, 20.0, 300.0, 300.0]


def test_by_item_id_in_json_with_occlusion(client, indexed):
    query, result = indexed.catalog.items_with_status("indexed")[:2]
    response = client.post("/api/v1/explain", json={
        "item_id": query.id, "result_item_id": result.id, "method": "occlusion"})
    assert response.status_code == 200, response.json
    assert response.json["method"] == "occlusion"
    assert len(response.json["query_heatmap"]) == 7
    score = indexed.explain(indexed.catalog.get(query.id), result.id).score
    # The same cosine from other forward passes: occlusion's in PyTorch, the
    # decomposition's feature maps on the search's runtime. In fp32 they agree to 1e-4;
    # in bf16 (a CPU with native bf16) two runtimes' roundings differ by hundredths.
    close = 1e-4 if indexed.embedder.precision == "fp32" else 0.05
    assert response.json["score"] == pytest.approx(score, abs=close)


def test_an_unknown_result_or_query_item_is_404_naming_it(client, indexed, sample_folder):
    known = indexed.catalog.items_with_status("indexed")[0].id
    missing = explain_upload(client, shot_bytes(sample_folder), result_item_id="a" * 64)
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    assert missing.json["field"] == "result_item_id" and "no item" in missing.json["detail"]
    query = client.post("/api/v1/explain", json={"item_id": "b" * 64, "result_item_id": known})
    assert (query.status_code, query.json["field"]) == (404, "item_id")


@pytest.mark.parametrize("payload, field", [
    ({}, "result_item_id"),
    ({"result_item_id": "../../etc/passwd"}, "result_item_id"),
    ({"result_item_id": 12}, "result_item_id"),
    ({"result_item_id": "RESULT", "method": "gradcam"}, "method"),
])  # fmt: skip
def test_a_missing_or_bad_result_item_id_or_method_is_422(client, indexed, payload, field):
    target = indexed.catalog.items_with_status("indexed")[0]
    if payload.get("result_item_id") == "RESULT":
        payload = {**payload, "result_item_id": target.id}
    response = client.post("/api/v1/explain", json={"item_id": target.id, **payload})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["field"] == field and field in response.json["detail"]


def test_bad_queries_are_refused_as_search_refuses_them(client, indexed):
    target = indexed.catalog.items_with_status("indexed")[0].id
    not_an_image = b"GIF89a but not really an image at all"
    explained = explain_upload(client, not_an_image, result_item_id=target)
    searched = search_upload(client, not_an_image)
    assert explained.status_code == searched.status_code == 422
    assert explained.json == searched.json  # same field, same detail
    none = client.post("/api/v1/explain", json={"result_item_id": target})
    assert (none.status_code, none.json["field"]) == (422, "image")
    text = client.post("/api/v1/explain", data="item_id=1", content_type="text/plain")
    assert (text.status_code, text.json["field"]) == (400, "body")
    private = client.post("/api/v1/explain", json={
        "image_url": "http://169.254.169.254/latest/meta-data/", "result_item_id": target})
    assert (private.status_code, private.json["field"]) == (422, "image_url")


def test_before_any_index_is_503_with_retry_after(home_for, sample_folder):
    client = create_app(engine=home_for("empty")).test_client()
    response = explain_upload(client, shot_bytes(sample_folder), result_item_id="a" * 64)
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0


def test_reads_need_the_key_when_configured_and_explain_is_measured(home_for, indexed, auth):
    target = indexed.catalog.items_with_status("indexed")[0].id
    body = {"item_id": target, "result_item_id": target}
    closed = create_app(engine=home_for("closed", api_read_key_required=True)).test_client()
    assert closed.post("/api/v1/explain", json=body).status_code == 401
    client = create_app(engine=indexed).test_client()
    assert client.post("/api/v1/explain", json=body).status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'lookalike_explain_duration_seconds_count{method="decomposition"} 1' in metrics


def test_a_region_query_is_explained_on_its_crop(client, indexed, sample_folder):
    """``box`` as /search takes it: the crop is the query, its map covers the crop, the
    search score is the boxed search's; a bad box is the same 422 as /search's."""
    query = shot_bytes(sample_folder, 4)
    hits = search_upload(client, query, k="3", box="40,60,240,300").json["results"]
    response = explain_upload(client, query, result_item_id=hits[0]["item_id"],
                              box="40,60,240,300")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["query_image"]["width"] == 200 and body["query_image"]["height"] == 240
    assert body["search_score"] == pytest.approx(hits[0]["score"], abs=1e-6)
    assert sum(map(sum, body["query_heatmap"])) == pytest.approx(body["score"], abs=1e-4)
    item = client.post("/api/v1/explain", json={
        "item_id": hits[0]["item_id"], "result_item_id": hits[1]["item_id"],
        "box": [0, 0, 100, 120]})
    assert item.status_code == 200, item.json
    assert (item.json["query_image"]["width"], item.json["query_image"]["height"]) == (100, 120)
    for bad, words in (("0,0,8,8", "smaller than the 16x16"), ("0,0,900,900", "outside"),
                       ("nope", "4 numbers")):
        refused = explain_upload(client, query, result_item_id=hits[0]["item_id"], box=bad)
        searched = search_upload(client, query, box=bad)
        assert refused.status_code == searched.status_code == 422
        assert refused.json["field"] == "box" and words in refused.json["detail"]
        assert refused.json["detail"] == searched.json["detail"]

"""POST /api/v1/search: by upload, by item id, by URL; parameters refused with the field named."""

import io

import pytest

from search_api import create_app

pytestmark = pytest.mark.slow


def shot_bytes(sample_folder, index: int = 0) -> bytes:
    return sorted(sample_folder.rglob("*.jpg"))[index].read_bytes()


def upload(client, data: bytes, **form):
    return client.post(
        "/api/v1/search",
        data={"image": (io.BytesIO(data), "query.jpg"), **form},
        content_type="multipart/form-data",
    )


def test_an_uploaded_catalogue_photo_finds_itself_first(client, indexed, sample_folder):
    response = upload(client, shot_bytes(sample_folder, 4), k="5")
    assert response.status_code == 200, response.json
    body = response.json
    assert len(body["results"]) == 5
    best = body["results"][0]
    assert best["score"] == pytest.approx(1.0, abs=1e-3)
    assert set(best) == {
        "item_id", "score", "product_id", "label", "title", "thumbnail_url", "image_url"
    }  # fmt: skip
    assert best["thumbnail_url"] == f"/api/v1/items/{best['item_id']}/thumbnail"
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["index_version"] == indexed.indexes.current_version()
    assert body["model_version"] == indexed.model.version
    assert body["took_ms"] > 0


def test_search_by_item_id_uses_the_stored_vector(client, indexed):
    target = indexed.catalog.items_with_status("indexed")[2]
    response = client.post("/api/v1/search?k=3", json={"item_id": target.id})
    assert response.status_code == 200, response.json
    hits = response.json["results"]
    assert len(hits) == 3
    assert hits[0]["item_id"] == target.id
    assert [h["item_id"] for h in hits] == [h.item.id for h in indexed.search(target, k=3)]


def test_k_from_a_json_field_and_the_default(client, indexed):
    target = indexed.catalog.items_with_status("indexed")[0]
    assert len(client.post("/api/v1/search", json={"item_id": target.id, "k": 2})
               .json["results"]) == 2  # fmt: skip
    assert len(client.post("/api/v1/search", json={"item_id": target.id})
               .json["results"]) == 10  # fmt: skip


def test_filters_min_score_and_grouping(client, indexed):
    items = indexed.catalog.items_with_status("indexed")
    target = items[0]
    other = next(item for item in items if item.product_id != target.product_id)
    by_product = client.post(
        "/api/v1/search", json={"item_id": target.id, "product_id": other.product_id, "k": 10}
    ).json["results"]
    assert by_product and {h["product_id"] for h in by_product} == {other.product_id}
    by_label = client.post(
        "/api/v1/search", json={"item_id": target.id, "label": other.label}
    ).json["results"]
    assert by_label and {h["label"] for h in by_label} == {other.label}

    grouped = client.post(
        "/api/v1/search", json={"item_id": target.id, "group_by_product": True}
    ).json["results"]
    products = [h["product_id"] for h in grouped]
    assert len(products) == len(set(products)) == 4  # one per product, its best image
    assert grouped[0]["item_id"] == target.id

    strict = client.post(
        "/api/v1/search", json={"item_id": target.id, "min_score": 0.999}
    ).json["results"]
    assert [h["item_id"] for h in strict] == [target.id]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": 10**9}, "k"),
        ({"k": "ten"}, "k"),
        ({"k": True}, "k"),
        ({"k": 2.5}, "k"),
        ({"min_score": "high"}, "min_score"),
        ({"min_score": 3}, "min_score"),
        ({"label": 5}, "label"),
        ({"group_by_product": "maybe"}, "group_by_product"),
    ],
)
def test_bad_parameters_are_refused_with_the_field_named(client, indexed, payload, field):
    target = indexed.catalog.items_with_status("indexed")[0]
    response = client.post("/api/v1/search", json={"item_id": target.id, **payload})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["field"] == field
    assert field in response.json["detail"]


def test_k_out_of_range_in_the_query_string_and_form(client, sample_folder):
    assert client.post("/api/v1/search?k=0", json={"item_id": "0" * 64}).json["field"] == "k"
    response = upload(client, shot_bytes(sample_folder), k=str(10**9))
    assert (response.status_code, response.json["field"]) == (422, "k")


def test_item_ids_unknown_malformed_or_of_the_wrong_type(client):
    missing = client.post("/api/v1/search", json={"item_id": "a" * 64})
    assert missing.status_code == 404 and "no item" in missing.json["detail"]
    for bad in ("../../etc/passwd", 12, None, ["a" * 64]):
        response = client.post("/api/v1/search", json={"item_id": bad})
        assert response.status_code == 422, bad


def test_exactly_one_query_is_needed(client, indexed, sample_folder):
    assert client.post("/api/v1/search", json={}).status_code == 422
    target = indexed.catalog.items_with_status("indexed")[0]
    both = client.post(
        "/api/v1/search", json={"item_id": target.id, "image_url": "https://example.com/a.jpg"}
    )
    assert both.status_code == 422 and "exactly one" in both.json["detail"]


def test_non_json_and_malformed_json_bodies(client):
    broken = client.post("/api/v1/search", data="{not json", content_type="application/json")
    assert (broken.status_code, broken.json["field"]) == (400, "body")
    listed = client.post("/api/v1/search", json=["item_id"])
    assert (listed.status_code, listed.json["field"]) == (422, "body")
    text = client.post("/api/v1/search", data="item_id=1", content_type="text/plain")
    assert (text.status_code, text.json["field"]) == (400, "body")


def test_an_upload_that_is_not_an_image(client):
    response = upload(client, b"GIF89a but not really an image at all")
    assert (response.status_code, response.json["field"]) == (422, "image")


def test_image_url_to_cloud_metadata_is_refused(client):
    response = client.post(
        "/api/v1/search", json={"image_url": "http://169.254.169.254/latest/meta-data/"}
    )
    assert response.status_code == 422
    assert response.json["field"] == "image_url"
    assert "169.254.169.254" in response.json["detail"] or "link" in response.json["detail"]


def test_search_before_any_index_is_503_with_retry_after(home_for, sample_folder):
    client = create_app(engine=home_for("empty")).test_client()
    response = upload(client, shot_bytes(sample_folder))
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "Retry-After" in ready.headers


def test_search_by_image_url_through_the_safe_fetcher(home_for, indexed, sample_folder):
    from local_http import LocalServer

    engine = home_for(
        "by-url", fetch_allow_networks=["127.0.0.0/8"], fetch_respect_robots=False,
        fetch_per_host_interval=0,
    )  # fmt: skip
    engine.ingest(sample_folder)
    engine.embed()
    engine.build_index()
    client = create_app(engine=engine).test_client()
    with LocalServer() as server:
        server.serve("/photo.jpg", shot_bytes(sample_folder, 7))
        server.serve("/page.html", b"<html>not an image</html>", content_type="text/html")
        found = client.post("/api/v1/search", json={"image_url": server.url("/photo.jpg")})
        not_image = client.post("/api/v1/search", json={"image_url": server.url("/page.html")})
    assert found.status_code == 200, found.json
    assert found.json["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert (not_image.status_code, not_image.json["field"]) == (422, "image_url")


# -- region queries: box=x0,y0,x1,y1 ---------------------------------------------------


@pytest.mark.parametrize(
    ("box", "says"),
    [
        ("1,2,3", 'box must be 4 numbers "x0,y0,x1,y1" in pixels'),
        ([1, 2, 3], "box must be 4 numbers [x0, y0, x1, y1] in pixels"),
        ("left,top,right,bottom", "box must be 4 numbers"),
        ({"x0": 1}, "box must be 4 numbers"),
        (7, "box must be 4 numbers"),
        ([0, 0, "40", 40], "box must be 4 numbers"),
        ("50,10,20,60", "box (50, 10, 20, 60) is inverted: x1 must be greater than x0"),
        ([0, 0, 10, 40], "box (0, 0, 10, 40) is 10x40 pixels, smaller than the 16x16 minimum"),
        ([0, 0, 400, 100], "box (0, 0, 400, 100) is outside the 320x320 photo"),
        ("-4,0,100,100", "is outside the 320x320 photo"),
        (None, "box must not be null"),
    ],
)
def test_a_bad_box_is_422_naming_box_and_what_is_wrong(client, indexed, box, says):
    target = indexed.catalog.items_with_status("indexed")[0]  # a 320x320 sample photo
    response = client.post("/api/v1/search", json={"item_id": target.id, "box": box})
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["field"] == "box"
    assert says in response.json["detail"]


def test_a_bad_box_on_an_upload_or_given_twice(client, sample_folder):
    outside = upload(client, shot_bytes(sample_folder), box="0,0,320,321")
    assert (outside.status_code, outside.json["field"]) == (422, "box")
    assert "outside the 320x320 photo (x from 0 to 320, y from 0 to 320)" in outside.json["detail"]
    small = upload(client, shot_bytes(sample_folder), box="300,300,315,320")
    assert small.status_code == 422 and "smaller than the 16x16" in small.json["detail"]
    twice = upload(client, shot_bytes(sample_folder), box=["0,0,30,30", "0,0,40,40"])
    assert (twice.status_code, twice.json["field"]) == (422, "box")
    assert "given once" in twice.json["detail"]


def test_a_boxed_upload_searches_by_the_crop_and_echoes_the_box(client, indexed, sample_folder):
    from PIL import Image

    data = shot_bytes(sample_folder, 5)
    box = [20.5, 40, 260, 300.25]
    boxed = upload(client, data, box=",".join(str(v) for v in box), k="6")
    assert boxed.status_code == 200, boxed.json
    assert boxed.json["box"] == [20, 40, 260, 301]  # every pixel the box touches
    crop = Image.open(io.BytesIO(data)).convert("RGB").crop((20, 40, 260, 301))
    expected = indexed.search(crop, k=6)
    assert [(h["item_id"], h["score"]) for h in boxed.json["results"]] == [
        (hit.item.id, round(hit.score, 6)) for hit in expected
    ]
    plain = upload(client, data, k="6")
    assert plain.json["box"] is None
    assert plain.json["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert boxed.json["results"][0]["score"] < 0.999  # the crop is not the whole photo


def test_a_box_on_an_item_query_crops_its_stored_original(client, indexed):
    from PIL import Image

    target = indexed.catalog.items_with_status("indexed")[3]
    response = client.post(
        "/api/v1/search", json={"item_id": target.id, "box": [0, 0, 200, 160], "k": 4}
    )
    assert response.status_code == 200, response.json
    assert response.json["box"] == [0, 0, 200, 160]
    original = Image.open(indexed.settings.home / target.stored_path).convert("RGB")
    expected = indexed.search(original.crop((0, 0, 200, 160)), k=4)
    assert [h["item_id"] for h in response.json["results"]] == [h.item.id for h in expected]
    as_text = client.post(
        "/api/v1/search", json={"item_id": target.id, "box": "0, 0, 200, 160", "k": 4}
    )
    assert as_text.json["results"] == response.json["results"]


def side_by_side(left, right, gap: int = 24):
    """One photo holding ``left`` and ``right`` on a grey shelf; each one's box in it."""
    from PIL import Image

    width = gap + left.width + gap + right.width + gap
    height = gap + max(left.height, right.height) + gap
    shelf = Image.new("RGB", (width, height), (128, 128, 128))
    boxes = [(gap, gap, gap + left.width, gap + left.height)]
    boxes.append((boxes[0][2] + gap, gap, boxes[0][2] + gap + right.width, gap + right.height))
    shelf.paste(left, boxes[0][:2])
    shelf.paste(right, boxes[1][:2])
    buffer = io.BytesIO()
    shelf.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), boxes


def test_a_photo_of_two_catalogue_products_finds_each_first_when_boxed(
    home_for, sample_catalogue
):
    import numpy as np

    from indexer.sample import render_shot, sample_products

    engine = home_for("two-products")
    engine.ingest(sample_catalogue(products=8, shots=3, seed=11))  # 2 products, 6 distractors
    client = create_app(engine=engine).test_client()
    products = sample_products(8, seed=11)
    left, right = products[2], products[5]
    for scene in range(3):  # new shots on a shared shelf: no photo is in the catalogue
        rng = np.random.default_rng(scene)
        photo, boxes = side_by_side(render_shot(left, rng), render_shot(right, rng))
        for product, box in ((left, boxes[0]), (right, boxes[1])):
            response = upload(client, photo, box=",".join(map(str, box)), k="3")
            assert response.status_code == 200, response.json
            assert response.json["box"] == list(box)
            first = response.json["results"][0]
            assert first["label"] == product.name, (scene, product.name, response.json)

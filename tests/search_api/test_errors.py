"""Every error is application/problem+json with a clear message; request size limits hold."""

import io

import pytest

from search_api import create_app

pytestmark = pytest.mark.slow


def is_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_404_and_405_are_problems(client):
    is_problem(client.get("/api/v1/nothing-here"), 404)
    response = client.get("/api/v1/search")
    is_problem(response, 405)
    assert "POST" in response.headers["Allow"]


def test_an_unexpected_exception_is_a_500_problem_without_a_traceback(indexed):
    app = create_app(engine=indexed)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals /etc/shadow")

    body = is_problem(app.test_client().get("/boom"), 500)
    assert "secret" not in body["detail"]


def test_a_body_over_the_limit_is_413(indexed):
    client = create_app({"MAX_CONTENT_LENGTH": 10_000}, engine=indexed).test_client()
    response = client.post(
        "/api/v1/search",
        data={"image": (io.BytesIO(b"x" * 20_000), "big.jpg")},
        content_type="multipart/form-data",
    )
    is_problem(response, 413)


def test_a_chunked_body_without_a_length_is_cut_at_the_limit(indexed):
    client = create_app({"MAX_CONTENT_LENGTH": 10_000}, engine=indexed).test_client()
    body = b'{"item_id": "' + b"a" * 50_000 + b'"}'
    response = client.post(
        "/api/v1/search",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    is_problem(response, 413)


def test_2000_multipart_parts_is_413(client):
    data = {f"field{i}": "x" for i in range(2000)}
    response = client.post("/api/v1/search", data=data, content_type="multipart/form-data")
    is_problem(response, 413)


def test_the_limits_come_from_settings(indexed):
    app = create_app(engine=indexed)
    settings = indexed.settings
    assert app.config["MAX_CONTENT_LENGTH"] == settings.api_max_upload_bytes
    assert app.config["MAX_FORM_MEMORY_SIZE"] == settings.api_max_form_memory_bytes
    assert app.config["MAX_FORM_PARTS"] == settings.api_max_form_parts == 1000


def test_a_chunked_body_under_the_limit_is_read_whole(indexed):
    client = create_app({"MAX_CONTENT_LENGTH": 10_000}, engine=indexed).test_client()
    target = indexed.catalog.items_with_status("indexed")[0]
    response = client.post(
        "/api/v1/search",
        input_stream=io.BytesIO(b'{"k": 2, "item_id": "' + target.id.encode() + b'"}'),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200, response.json
    assert response.json["results"][0]["item_id"] == target.id

"""413 by convention (search_api/limits.py): a body or a part over its limit is a 413 problem+json.

In-process, with small limits and a body stream that counts what the app read from it:
a body whose Content-Length is over the limit is refused before a byte of it is read; a
file part over the image limit as soon as it passes it, before the rest is read. No model
and no index: the limits act before either is needed. tests/search_api/test_http_limits.py
sends the same through a real gunicorn.
"""

from __future__ import annotations

import io

import pytest

from indexer.config import Settings
from search_api import create_app

KEY = "limits-key-0123456789abcdef"
IMAGE_LIMIT = 100_000
# A single-image view takes IMAGE_LIMIT + FORM_MEMORY bytes at most. (Werkzeug reads a form
# 64 KiB at a time and refuses a read larger than the form memory limit: keep it above.)
FORM_MEMORY = 100_000
BODY_LIMIT = 1_000_000
BOUNDARY = "lookalikeBOUNDARY"


class CountingStream:
    """``size`` bytes of a multipart body with one file part; ``read`` counts what was read."""

    def __init__(self, field: str, size: int) -> None:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.data = head + b"\xff" * (size - len(head) - len(tail)) + tail
        self.position = 0
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else self.position + size
        chunk = self.data[self.position : end]
        self.position += len(chunk)
        self.read_bytes += len(chunk)
        return chunk

    def tell(self) -> int:  # the test client measures the stream with tell and seek
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: len(self.data) + offset}[whence]
        return self.position


@pytest.fixture
def app(tmp_path):
    settings = Settings(
        _env_file=None, home=tmp_path / "home", database_url=None, api_key=KEY,
        api_preload=False, max_image_bytes=IMAGE_LIMIT, api_max_form_memory_bytes=FORM_MEMORY,
        api_max_upload_bytes=BODY_LIMIT,
    )  # fmt: skip
    return create_app(settings=settings, extensions=False)


def post(app, path: str, stream: CountingStream, *, chunked: bool = False):
    headers = {"Authorization": f"Bearer {KEY}"}
    extra = {}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        extra["environ_overrides"] = {"wsgi.input_terminated": True}
    else:
        headers["Content-Length"] = str(len(stream.data))
    return app.test_client().post(
        path, input_stream=stream, headers=headers,
        content_type=f"multipart/form-data; boundary={BOUNDARY}", **extra,
    )  # fmt: skip


def is_413(response, *, field: str | None = None) -> str:
    assert response.status_code == 413, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == 413 and body["title"] == "Request Entity Too Large"
    assert body.get("field") == field, body
    return body["detail"]


@pytest.mark.parametrize("path", ["/api/v1/search", "/api/v1/explain"])
def test_one_image_over_the_image_limit_is_413_before_the_body_is_read(app, path):
    """Was: the whole body read, then 422 "file too large" (the issue's 60 MB search)."""
    stream = CountingStream("image", IMAGE_LIMIT + FORM_MEMORY + 1)
    detail = is_413(post(app, path, stream))
    assert detail == (
        f"request body of {IMAGE_LIMIT + FORM_MEMORY + 1} bytes is over the limit of "
        f"{IMAGE_LIMIT + FORM_MEMORY} bytes"
    )
    assert stream.read_bytes == 0


def test_an_image_over_the_limit_in_a_small_search_body_is_413_as_it_streams_in(app):
    """Just over the image limit, within the body limit: the part refuses it as it grows."""
    stream = CountingStream("image", IMAGE_LIMIT + 1_000)
    detail = is_413(post(app, "/api/v1/search", stream), field="image")
    assert detail == (
        f"uploaded file 'big.jpg' is larger than the image limit of {IMAGE_LIMIT} bytes"
    )


def test_one_image_part_over_the_image_limit_is_413_before_the_rest_of_the_form(app):
    stream = CountingStream("images", BODY_LIMIT - 1)  # the form fits the body limit
    detail = is_413(post(app, "/api/v1/items", stream), field="images")
    assert f"larger than the image limit of {IMAGE_LIMIT} bytes" in detail
    assert stream.read_bytes < BODY_LIMIT // 2  # it stopped reading at the bad part


def test_a_whole_form_over_the_body_limit_is_413_before_it_is_read(app):
    stream = CountingStream("images", BODY_LIMIT + 1)
    detail = is_413(post(app, "/api/v1/items", stream))
    assert detail == (
        f"request body of {BODY_LIMIT + 1} bytes is over the limit of {BODY_LIMIT} bytes"
    )
    assert stream.read_bytes == 0


@pytest.mark.parametrize(
    ("path", "size", "limit"),
    [("/api/v1/items", BODY_LIMIT + 1, BODY_LIMIT),
     ("/api/v1/search", IMAGE_LIMIT + FORM_MEMORY + 1, IMAGE_LIMIT + FORM_MEMORY)],
)  # fmt: skip
def test_a_chunked_body_over_the_limit_is_413_once_past_it(app, path, size, limit):
    stream = CountingStream("images", size)
    detail = is_413(post(app, path, stream, chunked=True))
    assert detail == f"chunked request body is over the limit of {limit} bytes"
    assert stream.read_bytes == limit + 1  # read to one byte past the limit, no further


def test_a_manifest_file_is_not_held_to_the_image_limit(app):
    """Only views that take images cap their parts: a manifest may be as large as a body."""
    text = b"label\n" + b"x\n" * IMAGE_LIMIT  # over the image limit, no image column
    response = app.test_client().post(
        "/api/v1/sources", headers={"Authorization": f"Bearer {KEY}"},
        data={"manifest": (io.BytesIO(text), "m.csv")}, content_type="multipart/form-data",
    )  # fmt: skip
    assert response.status_code == 422, response.json
    assert "header needs a 'path' or 'image_url' column" in response.json["detail"]


def test_a_refused_request_is_counted(app):
    client = app.test_client()
    post(app, "/api/v1/items", CountingStream("images", BODY_LIMIT + 1))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'route="/api/v1/items",status="413"' in metrics

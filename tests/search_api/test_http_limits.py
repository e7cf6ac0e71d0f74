"""HTTP limits through a real gunicorn: oversized bodies are a 413 problem+json, an oversized
head a 4xx from gunicorn, and the server serves the next client.

The client (raw_http.exchange) reads the answer while it sends, as curl and urllib3 do:
the server answers a declared length over the limit at once and closes the connection
without reading the rest, so a send may fail after the answer (EPIPE or a reset); that
is expected. Bodies are zeros streamed in 64 KiB chunks, never held in memory.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import urllib3
from gunicorn_harness import indexed_server
from raw_http import exchange, zeros

KEY = "http-limits-key-0123456789abcdef"
MB = 1_000_000
BOUNDARY = "lookalikeBOUNDARY"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    from worker_harness import Procs

    folder = tmp_path_factory.mktemp("http-limits")
    procs = Procs(folder)
    try:
        base, _, _ = indexed_server(folder, tiny_model, procs, api_key=KEY)
        yield base
    finally:
        procs.stop_all()


def address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    return parts.hostname, parts.port


def multipart_upload(base: str, path: str, field: str, size: int, *, chunked: bool = False):
    """POST a multipart form with one ``size``-byte file in ``field``, streamed."""
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n').encode()  # fmt: skip
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    framing = f"Content-Length: {len(head) + size + len(tail)}"
    body = _parts(head, zeros(size), tail)
    if chunked:
        framing = "Transfer-Encoding: chunked"
        body = _chunked(body)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {address(base)[0]}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()
    return exchange(address(base), request, body)


def _parts(head: bytes, middle, tail: bytes):
    yield head
    yield from middle
    yield tail


def _chunked(chunks):
    for chunk in chunks:
        yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
    yield b"0\r\n\r\n"


def is_413_problem(answer) -> dict:
    assert answer.status == 413, (answer.status, answer.body[:300])
    assert answer.headers["content-type"] == "application/problem+json"
    body = json.loads(answer.body)
    assert body["status"] == 413 and body["detail"]
    return body


def still_serves(base: str) -> None:
    response = urllib3.request("GET", f"{base}/healthz", retries=False, timeout=30)
    assert response.status == 200


def test_a_60_mb_search_upload_is_413_not_422(server):
    """Under the 64 MiB body limit but over one image (25 MiB): refused before it is read
    (it was read, then answered 422 "file too large")."""
    answer = multipart_upload(server, "/api/v1/search", "image", 60 * MB)
    body = is_413_problem(answer)
    assert body["detail"] == "request body of 60000140 bytes is over the limit of 26738688 bytes"
    assert answer.closed  # the rest of the body is left unread: the connection must go
    still_serves(server)


def test_a_60_mb_image_in_an_upload_form_is_413_as_it_streams_in(server):
    """/items takes many images, so 60 MB is a possible form: its one part is over the
    image limit and refused once past it."""
    body = is_413_problem(multipart_upload(server, "/api/v1/items", "images", 60 * MB))
    assert body["field"] == "images"
    assert body["detail"] == "uploaded file 'big.jpg' is larger than the image limit of 25 MiB"
    still_serves(server)


def test_a_200_mb_upload_is_413_not_a_reset(server):
    answer = multipart_upload(server, "/api/v1/items", "images", 200 * MB)
    body = is_413_problem(answer)
    assert body["detail"].endswith("bytes is over the limit of 64 MiB")
    assert answer.sent < 200 * MB  # answered long before the client could send it all
    still_serves(server)


def test_a_200_mb_chunked_upload_is_413_once_past_the_limit(server):
    answer = multipart_upload(server, "/api/v1/items", "images", 200 * MB, chunked=True)
    body = is_413_problem(answer)
    assert body["detail"] == "chunked request body is over the limit of 64 MiB"
    still_serves(server)


def test_an_ordinary_client_sees_the_413_of_a_200_mb_upload(server):
    """urllib3 sends a body with a known length and reads the early answer."""
    size = 200 * MB
    response = urllib3.request(
        "POST", f"{server}/api/v1/items", body=zeros(size), retries=False, timeout=60,
        headers={"Authorization": f"Bearer {KEY}", "Content-Length": str(size),
                 "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert response.status == 413
    assert response.headers["Content-Type"] == "application/problem+json"


HOSTILE_HEADS = {
    "a_1_mb_header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MB + b"\r\n\r\n",
    "a_1_mb_request_line": b"GET /healthz?" + b"a" * MB + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "200_headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
}  # fmt: skip


@pytest.mark.parametrize("head", HOSTILE_HEADS.values(), ids=HOSTILE_HEADS)
def test_an_oversized_head_is_refused_by_gunicorn_and_others_are_served(server, head):
    """gunicorn's limits (search_api/serve.py): 8190-byte request line and header fields,
    100 fields. It answers before reading the rest, then closes."""
    answer = exchange(address(server), head)
    assert answer.status in (400, 414, 431), (answer.status, answer.body[:200])
    assert answer.closed
    still_serves(server)

"""indexer.sources.responses: the body under the deadline and the byte limit, and its type.

Real servers that drip, stream without end, lie about the length or serve
something else than an image; how much they got to send is checked too.
"""

from __future__ import annotations

import time

from fetch_harness import HTML, JPEG, fetch_error, image_streamer, make_fetcher

# -- the deadline ----------------------------------------------------------------------


def test_slow_body_cut_off_by_the_deadline(server):
    """One byte a second passes every read timeout; the deadline still ends it."""

    def drip(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(JPEG)))
        handler.end_headers()
        for byte in JPEG[:30]:
            handler.wfile.write(bytes([byte]))
            time.sleep(1.0)

    server.route("/slow", drip)
    fetcher = make_fetcher(deadline=1.5, read_timeout=5.0, retries=0, respect_robots=False)
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/slow"))
    elapsed = time.monotonic() - started
    assert error.reason == "deadline of 1.5 s exceeded"
    assert not error.permanent
    assert 1.4 <= elapsed < 3.0  # not the 30 s that reading it all would take


# -- size limits -----------------------------------------------------------------------


def test_endless_body_without_length_cut_off_at_the_byte_limit(server):
    limit = 1024 * 1024
    done = image_streamer(server, JPEG[:64], total=200 * 1024 * 1024)
    fetcher = make_fetcher(max_bytes=limit, respect_robots=False)
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/stream"))
    assert error.reason == f"body exceeds {limit} bytes"
    assert error.permanent and error.attempts == 1
    assert time.monotonic() - started < 3
    # The server had to stop early: the client hung up long before 200 MB.
    assert done.wait(10)
    assert server.notes["sent"] < 64 * 1024 * 1024


def test_content_length_over_the_limit_refused_before_reading(server):
    limit = 1024 * 1024
    done = image_streamer(server, JPEG[:64], total=300 * 1024 * 1024, length=300 * 1024 * 1024)
    error = fetch_error(make_fetcher(max_bytes=limit, respect_robots=False), server.url("/stream"))
    assert error.reason == f"body exceeds {limit} bytes (Content-Length: {300 * 1024 * 1024})"
    assert error.permanent
    assert done.wait(10)
    assert server.notes["sent"] < 64 * 1024 * 1024


def test_body_exactly_at_the_limit_accepted(server):
    result = make_fetcher(max_bytes=len(JPEG)).fetch(server.url("/a.jpg"))
    assert result.data == JPEG


def test_empty_body_refused(server):
    server.serve("/empty", b"")
    error = fetch_error(make_fetcher(), server.url("/empty"))
    assert error.reason == "empty body" and error.permanent


# -- content type ----------------------------------------------------------------------


def test_html_served_as_jpeg_refused(server):
    server.serve("/login", HTML, "image/jpeg")
    error = fetch_error(make_fetcher(), server.url("/login"))
    assert error.reason == "not an image: served as image/jpeg but the bytes are HTML"
    assert error.permanent


def test_text_html_refused_outright(server):
    server.serve("/page", JPEG, "text/html; charset=utf-8")  # even with image bytes
    error = fetch_error(make_fetcher(), server.url("/page"))
    assert error.reason == "not an image: served as text/html" and error.permanent


def test_image_types_we_do_not_decode_refused(server):
    server.serve("/logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    error = fetch_error(make_fetcher(), server.url("/logo.svg"))
    assert error.reason.startswith("image type image/svg+xml not supported")


def test_pdf_served_as_octet_stream_refused(server):
    server.serve("/doc", b"%PDF-1.7\n" + bytes(200), "application/octet-stream")
    error = fetch_error(make_fetcher(), server.url("/doc"))
    assert error.reason == "not an image: served as application/octet-stream but the bytes are PDF"


def test_compressed_body_refused(server):
    server.serve("/gz", JPEG, "image/jpeg", headers={"Content-Encoding": "gzip"})
    error = fetch_error(make_fetcher(), server.url("/gz"))
    assert error.reason == "unexpected Content-Encoding gzip"

"""indexer.sources.content: Content-Type checks and sniffing the first bytes."""

from __future__ import annotations

import pytest
from images_factory import image_bytes

from indexer.sources.content import (
    SNIFF_BYTES,
    bytes_refusal,
    content_type_refusal,
    looks_like_html,
    media_type,
    sniff_image,
)


def test_media_type():
    assert media_type("Image/JPEG; charset=binary") == "image/jpeg"
    assert media_type(None) == "" and media_type("  ") == ""


@pytest.mark.parametrize(
    "content_type",
    ["image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/x-ms-bmp",
     "IMAGE/JPEG; q=1", None, "", "application/octet-stream", "binary/octet-stream"],
)  # fmt: skip
def test_types_let_through_to_the_byte_check(content_type):
    assert content_type_refusal(content_type) is None


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        ("text/html", "not an image: served as text/html"),
        ("text/html; charset=utf-8", "not an image: served as text/html"),
        ("application/json", "not an image: served as application/json"),
        ("video/mp4", "not an image: served as video/mp4"),
        ("image/svg+xml", "image type image/svg+xml not supported"),
        ("image/tiff", "image type image/tiff not supported"),
        ("image/heic", "image type image/heic not supported"),
    ],
)
def test_types_refused_before_reading(content_type, reason):
    assert content_type_refusal(content_type).startswith(reason)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_images_we_decode_pass_the_sniff(fmt):
    head = image_bytes(fmt)[:SNIFF_BYTES]
    assert sniff_image(head) == fmt
    assert bytes_refusal(head, "image/jpeg") is None  # a wrong image type is still an image


@pytest.mark.parametrize(
    "body",
    [
        b"<!DOCTYPE html><html><body>Sign in</body></html>",
        b"\xef\xbb\xbf  \n<html lang=en>",
        b"<HEAD><TITLE>404</TITLE>",
        b"<!-- error page -->",
    ],
)
def test_html_is_named(body):
    assert looks_like_html(body)
    assert bytes_refusal(body, "image/jpeg") == (
        "not an image: served as image/jpeg but the bytes are HTML"
    )


def test_other_formats_are_named():
    assert bytes_refusal(b"%PDF-1.7\n", None) == (
        "not an image: served as no content type but the bytes are PDF"
    )
    assert bytes_refusal(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png") == (
        "not an image: served as image/png but the bytes are SVG"
    )
    assert bytes_refusal(b"hello, world", "image/png") == (
        "not an image: served as image/png but the bytes are not JPEG, PNG, WEBP, GIF, BMP"
    )

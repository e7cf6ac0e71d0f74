"""indexer.sources.documents: document kinds, the type and bytes checks, and gunzip.

The same checks through a real server, with Fetcher.fetch_document: test_crawl.py.
"""

from __future__ import annotations

import gzip

import pytest
from fetch_harness import JPEG

from indexer.sources.documents import (
    check_served,
    document_format,
    document_kinds,
    gunzip,
    unpack,
)
from indexer.sources.failures import FetchError

URL = "http://shop.example/sitemap.xml.gz"


def reason(call, *args) -> str:
    with pytest.raises(FetchError) as info:
        call(*args)
    assert info.value.permanent and info.value.url == URL
    return info.value.reason


def test_document_kinds_and_their_accept_header():
    assert document_kinds(["xml", "html", "xml"]) == (
        ("xml", "html"),
        "application/xml,text/xml,text/html,application/xhtml+xml,*/*;q=0.1",
    )
    with pytest.raises(ValueError, match=r"unknown document kinds \['pdf'\] \(known: html, xml\)"):
        document_kinds(["html", "pdf"])
    with pytest.raises(ValueError, match="no document kind"):
        document_kinds([])


def test_served_type_checked_against_the_kinds():
    check_served("text/html", ("html",), URL)
    check_served("", ("html",), URL)  # untyped: the bytes decide
    check_served("application/gzip", ("xml",), URL)
    assert reason(check_served, "application/gzip", ("html",), URL) == (
        "not a document: served as application/gzip (accepted: text/html, application/xhtml+xml)"
    )


def test_document_format_from_the_type_or_else_the_bytes():
    assert document_format(b"<urlset/>", "text/xml", ("html", "xml"), URL) == "xml"
    assert document_format(b"\xef\xbb\xbf <!doctype html>", "", ("html", "xml"), URL) == "html"
    assert document_format(b"<?xml version='1.0'?><urlset/>", "", ("html", "xml"), URL) == "xml"
    assert document_format(b"<?xml version='1.0'?><html/>", "", ("html",), URL) == "html"
    assert reason(document_format, b"plain text", "", ("html", "xml"), URL) == (
        "not a document: served as no content type but the bytes are not HTML or XML"
    )
    assert reason(document_format, JPEG, "text/html", ("html",), URL) == (
        "not a document: served as text/html but the bytes are JPEG"
    )


def test_gunzip_reads_every_member_and_ignores_trailing_garbage():
    data = gzip.compress(b"<urlset>") + gzip.compress(b"</urlset>") + b"\0\0junk"
    assert gunzip(data, 100, URL) == b"<urlset></urlset>"


def test_gunzip_stops_one_byte_past_the_limit():
    bomb = gzip.compress(bytes(10_000_000))
    assert reason(gunzip, bomb, 1000, URL) == "body exceeds 1000 bytes once decompressed"
    assert gunzip(gzip.compress(bytes(1000)), 1000, URL) == bytes(1000)


def test_unpack_undoes_the_encoding_then_a_gzip_file_inside():
    twice = gzip.compress(gzip.compress(b"<urlset/>"))
    assert unpack(twice, True, "application/gzip", ("xml",), 100, URL) == b"<urlset/>"
    assert unpack(b"<html/>", False, "text/html", ("html",), 100, URL) == b"<html/>"
    assert reason(unpack, gzip.compress(b"<html/>"), False, "", ("html",), 100, URL) == (
        "not a document: served as no content type but gzip-compressed"
    )
    assert reason(unpack, gzip.compress(b""), True, "text/html", ("html",), 100, URL) == (
        "empty body"
    )

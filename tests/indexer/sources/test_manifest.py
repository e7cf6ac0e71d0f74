"""indexer.sources.manifest: CSV and JSON Lines, paths and URLs, errors with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.sources import ManifestError, is_manifest, iter_manifest, read_manifest


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_csv_with_paths_and_urls(tmp_path):
    manifest = write(
        tmp_path / "cat" / "manifest.csv",
        "product_id,path,image_url,label,title,url\n"
        "p1,img/a.jpg,,shoes,Red shoe,https://shop.example/p1\n"
        "p2,,https://img.example/b.png,bags,,\n"
        "p3,/abs/c.webp,,,,\n"
        "\n",
    )
    a, b, c = read_manifest(manifest)
    assert a.path == (tmp_path / "cat" / "img" / "a.jpg").resolve() and a.url is None
    assert (a.product_id, a.label, a.title, a.page_url) == (
        "p1",
        "shoes",
        "Red shoe",
        "https://shop.example/p1",
    )
    assert a.source_url == a.path.as_uri()
    assert b.path is None and b.url == "https://img.example/b.png"
    assert b.source_url == "https://img.example/b.png"
    assert (b.title, b.page_url) == (None, None)
    assert c.path == Path("/abs/c.webp")


def test_csv_with_byte_order_mark_and_odd_header_case(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffPath , Product_ID\na.jpg,42\n".encode())
    (record,) = read_manifest(manifest)
    assert record.path.name == "a.jpg" and record.product_id == "42"


def test_csv_quoted_fields(tmp_path):
    manifest = write(tmp_path / "m.csv", 'path,title\na.jpg,"Shoe, red ""deluxe"""\n')
    assert read_manifest(manifest)[0].title == 'Shoe, red "deluxe"'


def test_jsonl_with_paths_and_urls(tmp_path):
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"path": "a.jpg", "product_id": 7, "label": "shoes"},
            {"image_url": "http://img.example/b.jpg", "title": "B", "url": "https://s.example/b"},
            {"path": "c.jpg", "image_url": "https://img.example/c.jpg", "extra": [1, 2]},
        ],
    )
    a, b, c = read_manifest(manifest)
    assert a.path == (tmp_path / "a.jpg").resolve() and a.product_id == "7"
    assert b.url == "http://img.example/b.jpg" and b.page_url == "https://s.example/b"
    # both given: the local file is read, the URL is kept as its origin
    assert c.path == (tmp_path / "c.jpg").resolve() and c.url is None
    assert c.source_url == "https://img.example/c.jpg"


def test_ndjson_extension_and_blank_lines(tmp_path):
    manifest = write(tmp_path / "m.ndjson", '\n{"path": "a.jpg"}\n\n{"path": "b.jpg"}\n')
    assert [r.path.name for r in read_manifest(manifest)] == ["a.jpg", "b.jpg"]
    assert is_manifest(manifest) and is_manifest(tmp_path / "x.CSV")
    assert not is_manifest(tmp_path / "x.json")


def test_bad_json_names_the_line(tmp_path):
    manifest = write(tmp_path / "m.jsonl", '{"path": "a.jpg"}\n{"path": "b.jpg"\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl, line 2: invalid JSON") as info:
        read_manifest(manifest)
    assert info.value.line == 2


# A manifest file's text and what reading it must say (each error names its line).
BAD_MANIFESTS = {
    "json_line_that_is_not_an_object": (
        "m.jsonl", '{"path": "a.jpg"}\n["b.jpg"]\n', "line 2: expected a JSON object, got list"),
    "json_value_that_is_not_text": (
        "m.jsonl", '{"path": "a.jpg", "title": {"en": "x"}}\n',
        "line 1: column 'title' must be text"),
    "page_url_is_checked_too": (
        "m.csv", "path,url\na.jpg,javascript:alert(1)\n", "line 2: url must be an http"),
    "csv_header_without_image_column": (
        "m.csv", "product_id,label\n1,x\n", "line 1: header needs a 'path' or 'image_url'"),
    "csv_row_with_too_many_fields": (
        "m.csv", "path,label\na.jpg,x\nb.jpg,y,z\n", "line 3: 3 fields but the header has 2"),
    "empty_csv": ("m.csv", "", "empty manifest"),
    # Found by fuzzing (tests/fuzz): each escaped as another exception before.
    "path_with_a_nul_byte": (
        "m.csv", "path,image_url,label\na.jp\x00g,,x\n", "line 2: column 'path' contains a NUL"),
    "title_with_a_nul_escape": (
        "m.jsonl", '{"image_url": "https://a.example/x.jpg", "title": "a\\u0000b"}\n',
        "line 1: column 'title' contains a NUL"),
    "lone_surrogate_escape": (
        "m.jsonl", '{"image_url": "https://a.example/\\ud800.jpg"}\n',
        "line 1: column 'image_url' is not valid Unicode"),
    "json_nested_too_deeply": ("m.jsonl", "[" * 100_000 + "\n", "line 1: invalid JSON: nested"),
    "json_integer_of_5000_digits": (
        "m.jsonl", '{"path": "a.jpg", "product_id": ' + "7" * 5000 + "}\n",
        "line 1: invalid JSON: Exceeds the limit"),
    "unclosed_ipv6_bracket": (
        "m.csv", "image_url\nhttp://[::1/a.jpg\n", "line 2: image_url is not a valid URL"),
    "home_of_no_such_user": (
        "m.csv", "path\n~no-such-user-lookalike/a.jpg\n", "line 2: path .* cannot be resolved"),
}  # fmt: skip


@pytest.mark.parametrize(("name", "text", "error"), BAD_MANIFESTS.values(), ids=BAD_MANIFESTS)
def test_a_bad_manifest_is_refused_saying_why(tmp_path, name, text, error):
    with pytest.raises(ManifestError, match=error):
        read_manifest(write(tmp_path / name, text))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_row_without_path_or_url_names_the_line(tmp_path, suffix):
    if suffix == ".csv":
        manifest = write(tmp_path / "m.csv", "path,image_url,label\na.jpg,,x\n,,y\n")
        line = 3
    else:
        manifest = jsonl(tmp_path / "m.jsonl", [{"path": "a.jpg"}, {"label": "y"}])
        line = 2
    with pytest.raises(ManifestError, match=f"line {line}: row has neither 'path' nor 'image_url'"):
        read_manifest(manifest)


def test_read_manifest_validates_everything_first(tmp_path):
    manifest = jsonl(tmp_path / "m.jsonl", [{"path": "a.jpg"}, {"nothing": 1}])
    records = iter_manifest(manifest)
    assert next(records).path.name == "a.jpg"  # the lazy form gets that far
    with pytest.raises(ManifestError):
        read_manifest(manifest)  # the list form gets nowhere


@pytest.mark.parametrize(
    "url",
    ["ftp://img.example/a.jpg", "file:///etc/passwd", "javascript:alert(1)", "https://", "a.jpg"],
)
def test_only_http_urls(tmp_path, url):
    manifest = jsonl(tmp_path / "m.jsonl", [{"image_url": url}])
    with pytest.raises(ManifestError, match="line 1: image_url must be an http"):
        read_manifest(manifest)


def test_not_utf8(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path\n\xff\xfe.jpg\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(manifest)


def test_unknown_extension(tmp_path):
    with pytest.raises(ManifestError, match=r"use one of: \.csv, \.jsonl, \.ndjson"):
        read_manifest(write(tmp_path / "m.txt", "path\na.jpg\n"))


def test_local_paths_can_be_refused(tmp_path):
    manifest = jsonl(
        tmp_path / "m.jsonl", [{"image_url": "https://img.example/a.jpg"}, {"path": "/etc/passwd"}]
    )
    with pytest.raises(ManifestError, match="line 2: local paths are not allowed"):
        read_manifest(manifest, allow_paths=False)
    assert len(read_manifest(manifest)) == 2

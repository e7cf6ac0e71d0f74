"""The fuzzers' seed corpus: the good and bad inputs the rest of the suite already uses.

Generated in memory (nothing binary is checked in): every allowed format and the odd
modes the decoder normalises (tests/images_factory.py), the bad images the decoder
tests refuse (truncated, a decompression bomb, EPS, PSD, TIFF, text), and the good
and bad manifests of tests/indexer/sources/test_manifest.py. A few hand-made mutants
(bit flips, splices, lying header fields) start the fuzzer near the checks.

Names say what the target must do with a seed: ``good-`` accept it, ``bad-`` refuse it
with the module's error, ``odd-`` either (a decoder may tolerate the damage).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import images_factory as factory
from PIL import Image

CSV, JSONL = b"c", b"j"  # the manifest target's type byte (odd: CSV, even: JSON Lines)


def _png_with_size(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR is rewritten to claim another size (CRC fixed)."""
    data = bytearray(factory.png_bytes(seed=5, size=(16, 16)))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _gif_with_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen claims ``width`` x ``height``, larger than its frame."""
    data = bytearray(factory.gif_bytes(seed=2, size=(16, 16), frames=2))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(factory.bmp_bytes(seed=4, size=(8, 8)))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def _flipped(data: bytes, every: int) -> bytes:
    out = bytearray(data)
    for i in range(len(out) // 3, len(out), every):
        out[i] ^= 0x55
    return bytes(out)


def image_seeds() -> dict[str, bytes]:
    jpeg = factory.jpeg_bytes(seed=1, size=(48, 32))
    png = factory.png_bytes(seed=1, size=(48, 32))
    seeds = {
        **{
            f"good-{fmt.lower()}": factory.image_bytes(fmt, seed=1, size=(48, 32))
            for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP")
        },
        "good-animated-gif": factory.gif_bytes(seed=3, size=(24, 16), frames=3),
        "good-transparent-png": factory.transparent_png_bytes(size=(16, 16)),
        "good-palette-transparent-gif": factory.palette_transparent_gif_bytes(size=(16, 16)),
        "good-cmyk-jpeg": factory.cmyk_jpeg_bytes(size=(16, 12)),
        "good-png16": factory.png16_bytes(size=(16, 8)),
        "good-exif-rotated-jpeg": factory.exif_rotated_jpeg_bytes(size=(20, 10)),
        "good-progressive-jpeg": factory.encode(
            factory.photo_like(2, (32, 24)), "JPEG", progressive=True
        ),
        "good-lossless-webp": factory.encode(
            factory.photo_like(3, (24, 16)), "WEBP", lossless=True
        ),
        "good-rgba-webp": factory.encode(Image.new("RGBA", (12, 12), (0, 255, 0, 128)), "WEBP"),
        "good-la-png": factory.encode(Image.new("LA", (12, 12), (100, 50)), "PNG"),
        "good-bilevel-png": factory.encode(Image.new("1", (12, 12), 1), "PNG"),
        "good-palette-png": factory.encode(factory.photo_like(4, (16, 16)).quantize(16), "PNG"),
        "good-rgba-bmp": factory.encode(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "BMP"),
        "bad-truncated-jpeg": factory.truncated(jpeg),
        "bad-truncated-png": factory.truncated(png),
        "bad-png-bomb": factory.png_bomb_bytes(30000, 30000, rows=1),
        "bad-png-header-over-our-limit": _png_with_size(2000, 1001),
        "bad-png-zero-width": _png_with_size(0, 16),
        "bad-png-lying-size": _png_with_size(64, 64),
        "bad-gif-screen-larger-than-frame": _gif_with_screen(4000, 4000),
        "good-bmp-top-down": _bmp_with_size(8, -8),
        "bad-bmp-huge": _bmp_with_size(100000, 100000),
        "odd-flipped-jpeg": _flipped(jpeg, 7),
        "odd-flipped-png": _flipped(png, 11),
        "odd-jpeg-head-png-tail": jpeg[: len(jpeg) // 2] + png[len(png) // 2 :],
        "bad-eps": factory.eps_bytes(),
        "bad-psd": factory.psd_bytes(width=4, height=4),
        "bad-tiff": factory.encode(factory.photo_like(1, (8, 8)), "TIFF"),
        "bad-text": factory.text_bytes(),
        "bad-svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "bad-empty": b"",
    }
    return seeds


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def manifest_seeds() -> dict[str, bytes]:
    csv_text = {
        "good-csv-paths-and-urls": (
            "product_id,path,image_url,label,title,url\n"
            "p1,img/a.jpg,,shoes,Red shoe,https://shop.example/p1\n"
            "p2,,https://img.example/b.png,bags,,\n"
            "p3,/abs/c.webp,,,,\n\n"
        ),
        "good-csv-bom-odd-case": "\ufeffPath , Product_ID\na.jpg,42\n",
        "good-csv-quoted": 'path,title\na.jpg,"Shoe, red ""deluxe"""\n',
        "bad-csv-page-url-checked": "path,url\na.jpg,javascript:alert(1)\n",
        "bad-csv-no-image-column": "product_id,label\n1,x\n",
        "bad-csv-too-many-fields": "path,label\na.jpg,x\nb.jpg,y,z\n",
        "bad-csv-row-without-path-or-url": "path,image_url,label\na.jpg,,x\n,,y\n",
        "odd-csv-unclosed-quote": 'image_url,title\nhttps://a.example/x.jpg,"open\n',
        "bad-csv-nul": "image_url\nhttps://a.example/\x00.jpg\n",
        "bad-csv-empty": "",
    }
    jsonl_rows = {
        "good-jsonl-paths-and-urls": [
            {"path": "a.jpg", "product_id": 7, "label": "shoes"},
            {"image_url": "http://img.example/b.jpg", "title": "B", "url": "https://s.example/b"},
            {"path": "c.jpg", "image_url": "https://img.example/c.jpg", "extra": [1, 2]},
        ],
        "bad-jsonl-not-an-object": [{"path": "a.jpg"}, ["b.jpg"]],
        "bad-jsonl-value-not-text": [{"path": "a.jpg", "title": {"en": "x"}}],
        "bad-jsonl-bad-schemes": [
            {"image_url": u} for u in ("ftp://img.example/a.jpg", "file:///etc/passwd", "https://")
        ],
        "good-jsonl-local-path": [
            {"image_url": "https://img.example/a.jpg"},
            {"path": "/etc/passwd"},
        ],
        "bad-jsonl-numbers-and-bools": [
            {"image_url": "https://x.example/a", "product_id": 1.5, "label": True}
        ],
    }
    seeds = {name: CSV + text.encode() for name, text in csv_text.items()}
    seeds.update({name: JSONL + _jsonl(rows) for name, rows in jsonl_rows.items()})
    seeds["bad-jsonl-bad-json"] = JSONL + b'{"path": "a.jpg"}\n{"path": "b.jpg"\n'
    seeds["good-jsonl-blank-lines"] = JSONL + b'\n{"path": "a.jpg"}\n\n{"path": "b.jpg"}\n'
    seeds["bad-csv-not-utf8"] = CSV + b"path\n\xff\xfe.jpg\n"
    seeds["bad-jsonl-not-utf8"] = JSONL + b'{"path": "\xff"}\n'
    return seeds


SEEDS = {"image": image_seeds, "manifest": manifest_seeds}

# libFuzzer dictionaries: tokens the mutator splices in (format markers, column names).
# fmt: off
DICTIONARIES = {
    "image": [
        b"\x89PNG\r\n\x1a\n", b"IHDR", b"IDAT", b"IEND", b"PLTE", b"tRNS", b"eXIf", b"iCCP",
        b"zTXt", b"acTL", b"fcTL", b"fdAT", b"RIFF", b"WEBP", b"VP8 ", b"VP8L", b"VP8X",
        b"ALPH", b"ANIM", b"ANMF", b"EXIF", b"GIF89a", b"NETSCAPE2.0", b"\x21\xf9\x04",
        b"\xff\xd8\xff", b"\xff\xe0", b"\xff\xe1", b"Exif\x00\x00", b"MM\x00*", b"II*\x00",
        b"\x01\x12", b"\x12\x01", b"\xff\xc0", b"\xff\xc2", b"\xff\xc4", b"\xff\xda",
        b"\xff\xdb", b"\xff\xdd", b"\xff\xd9", b"BM", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x00",
    ],
    "manifest": [
        b"path", b"image_url", b"product_id", b"label", b"title", b"url", b"http://",
        b"https://", b"file://", b"\xef\xbb\xbf", b'"', b",", b"\r\n", b'{"', b'":', b"null",
        b"true", b"[]", b"{}", b"1e999", b"\\u0000", b"\\ud800",
    ],
}
# fmt: on


def write_dictionary(target: str, path: Path) -> Path:
    """``target``'s tokens in libFuzzer's dictionary format (one quoted, escaped token a line)."""
    lines = ['"' + "".join(f"\\x{b:02x}" for b in token) + '"' for token in DICTIONARIES[target]]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path

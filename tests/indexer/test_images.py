"""indexer.images: what is accepted, what is rejected and why, and how pixels come out."""

from __future__ import annotations

import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import images_factory as factory
import numpy as np
import pytest
from PIL import Image, ImageFile

from indexer.images import (
    ALLOWED_FORMATS,
    ImageRejected,
    content_id,
    load_image,
    make_thumbnail,
    sniff_format,
)

MiB = 1024 * 1024
LIMITS = {"max_bytes": 25 * MiB, "max_pixels": 40_000_000}


def load(data: bytes, **overrides):
    return load_image(data, **{**LIMITS, **overrides})


def rejected_reason(data: bytes, **overrides) -> str:
    with pytest.raises(ImageRejected) as info:
        load(data, **overrides)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == info.value.reason
    return info.value.reason


def test_content_id_is_sha256_hex():
    assert content_id(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert content_id(b"a") != content_id(b"b")
    assert len(content_id(factory.jpeg_bytes())) == 64


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_allowed_formats_load_as_rgb(fmt):
    loaded = load(factory.image_bytes(fmt, seed=3, size=(96, 64)))
    assert loaded.format == fmt
    assert loaded.image.mode == "RGB"
    assert (loaded.width, loaded.height) == (96, 64) == loaded.image.size
    assert loaded.ext in {"jpg", "png", "webp", "gif", "bmp"}


def test_png_pixels_survive_exactly():
    original = factory.photo_like(seed=5, size=(40, 30))
    loaded = load(factory.encode(original, "PNG"))
    assert np.array_equal(np.asarray(loaded.image), np.asarray(original))


def test_gif_loads_first_frame():
    data = factory.gif_bytes(seed=1, size=(48, 32), frames=3)
    first = Image.open(io.BytesIO(data)).convert("RGB")
    loaded = load(data)
    assert np.array_equal(np.asarray(loaded.image), np.asarray(first))


def test_cmyk_jpeg_loads_as_rgb():
    loaded = load(factory.cmyk_jpeg_bytes(size=(64, 48)))
    assert loaded.format == "JPEG"
    assert loaded.image.mode == "RGB"
    r, g, b = loaded.image.getpixel((32, 24))
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def test_16_bit_png_is_scaled_not_clipped():
    loaded = load(factory.png16_bytes(size=(64, 16)))
    array = np.asarray(loaded.image)
    assert loaded.image.mode == "RGB"
    row = array[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert 120 <= row[32] <= 135  # the middle of the ramp is mid-grey, not white
    assert np.all(np.diff(row) >= 0)  # still a ramp
    assert len(np.unique(row)) > 32  # gradations survive


def test_exif_orientation_is_applied():
    loaded = load(factory.exif_rotated_jpeg_bytes(size=(80, 40)))
    assert (loaded.width, loaded.height) == (40, 80)
    top = loaded.image.getpixel((20, 10))
    bottom = loaded.image.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60, top  # red on top after rotating clockwise
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_transparent_png_is_composited_on_white():
    loaded = load(factory.transparent_png_bytes(size=(32, 32)))
    assert loaded.image.getpixel((4, 16)) == factory.RED
    assert loaded.image.getpixel((28, 16)) == (255, 255, 255)


def test_palette_transparency_is_composited_on_white():
    loaded = load(factory.palette_transparent_gif_bytes(size=(32, 32)))
    assert loaded.image.getpixel((4, 16)) == factory.RED
    assert loaded.image.getpixel((28, 16)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA"])
def test_other_modes_become_rgb(mode):
    image = factory.photo_like(seed=2, size=(20, 10)).convert(mode)
    loaded = load(factory.encode(image, "PNG"))
    assert loaded.image.mode == "RGB" and loaded.image.size == (20, 10)


# -- rejections ---------------------------------------------------------------


def test_empty_file():
    assert rejected_reason(b"") == "empty file"


def test_text_named_jpg():
    assert rejected_reason(factory.text_bytes()) == "not an image: unrecognised format"


def test_eps_is_not_allowed():
    assert rejected_reason(factory.eps_bytes()) == (
        "format EPS not allowed (allowed: JPEG, PNG, WEBP, GIF, BMP)"
    )


def test_psd_is_not_allowed():
    assert rejected_reason(factory.psd_bytes()).startswith("format PSD not allowed")


def test_tiff_is_not_allowed_even_though_pillow_reads_it():
    data = factory.encode(factory.photo_like(size=(16, 16)), "TIFF")
    assert rejected_reason(data).startswith("format TIFF not allowed")


@pytest.mark.parametrize("make", [factory.truncated_jpeg_bytes, factory.truncated_png_bytes])
def test_truncated_images_are_rejected(make):
    assert rejected_reason(make()) == "truncated image data"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_file_too_large_is_rejected_before_decoding():
    data = factory.jpeg_bytes(size=(64, 64))
    reason = rejected_reason(data, max_bytes=len(data) - 1)
    assert reason == f"file too large: {len(data)} bytes exceeds {len(data) - 1} bytes limit"
    reason = rejected_reason(b"x" * (MiB + 1), max_bytes=MiB)
    assert reason == f"file too large: {MiB + 1} bytes exceeds 1 MiB limit"


def test_png_bomb_is_rejected_from_its_header():
    data = factory.png_bomb_bytes(30000, 30000)
    assert len(data) < 64 * 1024
    reason = rejected_reason(data)
    assert reason.startswith("image too large: ")
    assert "900000000 pixels exceeds limit 40000000" in reason


def test_pixel_limit_is_per_call():
    data = factory.png_bomb_bytes(3000, 3000)  # below Pillow's own limit: ours decides
    assert rejected_reason(data, max_pixels=1_000_000) == (
        "image too large: 3000x3000 pixels exceeds limit 1000000"
    )
    assert rejected_reason(factory.png_bytes(size=(100, 100)), max_pixels=9_999) == (
        "image too large: 100x100 pixels exceeds limit 9999"
    )
    assert load(factory.png_bytes(size=(100, 100)), max_pixels=10_000).width == 100


def test_pillow_global_limit_is_untouched():
    before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)
    for _ in range(2):
        with pytest.raises(ImageRejected):
            load(factory.png_bomb_bytes(30000, 30000), max_pixels=10)
        load(factory.jpeg_bytes())
    assert Image.MAX_IMAGE_PIXELS == before
    assert warnings.filters == filters_before


def test_decompression_bomb_warning_becomes_rejection(monkeypatch):
    # Pillow warns (rather than raises) between its limit and twice its limit.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)
    reason = rejected_reason(factory.png_bytes(size=(100, 80)))
    assert reason == "image too large: 8000 pixels exceeds limit 40000000"


def test_concurrent_loads_leave_warning_filters_alone():
    filters_before = list(warnings.filters)
    datas = [factory.jpeg_bytes(seed=i, size=(200, 150)) for i in range(4)]
    datas.append(factory.png_bomb_bytes(30000, 30000))
    barrier = threading.Barrier(4)

    def work(i: int) -> str:
        barrier.wait()
        try:
            return load(datas[i % len(datas)]).format
        except ImageRejected as rejected:
            return rejected.reason

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(40)))
    assert results.count("JPEG") == 32
    assert warnings.filters == filters_before


def test_sniff_format_names_common_non_web_formats():
    assert sniff_format(factory.eps_bytes()) == "EPS"
    assert sniff_format(factory.psd_bytes()) == "PSD"
    assert sniff_format(b"%PDF-1.7\n") == "PDF"
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x1cftypavif\x00\x00") == "AVIF"
    assert sniff_format(b'<?xml version="1.0"?><svg xmlns="x"/>') == "SVG"
    assert sniff_format(factory.text_bytes()) is None


# -- thumbnails ---------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [((400, 200), (128, 64)), ((90, 300), (38, 128))])
def test_thumbnail_keeps_aspect_and_fits(size, expected):
    image = factory.photo_like(seed=1, size=size)
    thumb = Image.open(io.BytesIO(make_thumbnail(image, 128)))
    assert thumb.format == "JPEG"
    assert max(thumb.size) <= 128
    assert thumb.size == expected


def test_thumbnail_never_enlarges_and_leaves_input_alone():
    image = factory.photo_like(seed=1, size=(50, 20))
    thumb = Image.open(io.BytesIO(make_thumbnail(image, 256)))
    assert thumb.size == (50, 20)
    assert image.size == (50, 20)


# -- one decoder for every path -----------------------------------------------


def test_files_decode_like_bytes(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(factory.jpeg_bytes(seed=4, size=(96, 64)))
    from_file = load_image(path, max_pixels=40_000_000)
    from_bytes = load(path.read_bytes())
    assert from_file.format == "JPEG" and from_file.image.size == (96, 64)
    assert np.array_equal(np.asarray(from_file.image), np.asarray(from_bytes.image))
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageRejected, match="empty file"):
        load_image(tmp_path / "empty.jpg", max_pixels=100)
    with pytest.raises(ImageRejected, match="file too large"):
        load_image(path, max_pixels=40_000_000, max_bytes=10)
    with pytest.raises(ImageRejected, match="cannot read file"):
        load_image(tmp_path, max_pixels=100)


def test_draft_decodes_jpegs_smaller_but_never_below_the_target():
    data = factory.jpeg_bytes(seed=2, size=(800, 600))
    assert load(data, draft=150).image.size == (200, 150)  # 1/4: 1/8 would go below 150
    assert load(data, draft=1000).image.size == (800, 600)
    png = factory.png_bytes(size=(800, 600))
    assert load(png, draft=150).image.size == (800, 600)  # only JPEGs have a draft mode


def _upright_corners(pixels: np.ndarray) -> None:
    """Red on top, blue below: exif_rotated_jpeg_bytes turned as its EXIF says."""
    height, width = pixels.shape[:2]
    for y, colour in ((2, factory.RED), (height - 3, factory.BLUE)):
        for x in (2, width - 3):
            r, g, b = (int(v) for v in pixels[y, x])
            assert (r > 200 and b < 60) if colour == factory.RED else (b > 200 and r < 60), (
                y, x, (r, g, b))


def test_exif_rotated_jpeg_is_upright_on_every_path(tmp_path):
    from indexer.model.preprocess import Preprocessor
    from indexer.training.data import LabelledImage, decode_check
    from indexer.training.inputs import load_views

    data = factory.exif_rotated_jpeg_bytes(size=(80, 40))
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    _upright_corners(np.asarray(load(data).image))  # intake and query uploads
    preprocessor = Preprocessor({"input_size": (3, 32, 32), "interpolation": "bicubic",
                                 "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0})
    assert preprocessor.open(path).size == (40, 80)
    _upright_corners(preprocessor.from_path(path).numpy())  # embedding
    image = LabelledImage(path, "rotated")
    assert decode_check([image], preprocessor, workers=1) == ([image], [])
    for view in (0, 1):  # training views: the eval transform and its mirror
        _upright_corners(load_views([image], [0], [view], preprocessor, seed=0, salt=0)[0].numpy())

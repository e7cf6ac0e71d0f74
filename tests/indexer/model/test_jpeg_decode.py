"""indexer.model.jpeg_decode: device JPEG decoding matches the CPU path; bad files fall back.

Every test runs on the CPU (torchvision's libjpeg-turbo decoder, the same code path) and
on CUDA when there is one (nvJPEG).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.images import ImageRejected
from indexer.model.jpeg_decode import JpegBatchDecoder, gpu_decoding_available, resized_size
from indexer.model.preprocess import PixelNormalizer, Preprocessor
from tests import images_factory as factory

_CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", marks=pytest.mark.skipif(not _CUDA, reason="CUDA absent"),
                 id="cuda" if _CUDA else "cuda-absent-skipped"),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    device = torch.device(request.param)
    if device.type == "cuda" and not gpu_decoding_available(device):
        pytest.skip("CUDA present but its JPEG decoder is not usable")
    return device


@pytest.fixture(scope="module")
def preprocessor(pretrained_lite0) -> Preprocessor:
    return Preprocessor(pretrained_lite0.data_config)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory, photo_files, sample_photos) -> list[Path]:
    """Real photos, one big enough for the CPU's draft decode, and odd sizes (up-scaled too)."""
    folder = tmp_path_factory.mktemp("jpegs")
    big = folder / "big.jpg"
    sample_photos["flower"].resize((1600, 1200), Image.Resampling.BICUBIC).save(big, quality=92)
    paths = [*photo_files, big]
    for seed, size in enumerate([(96, 64), (300, 500), (257, 300)]):
        path = folder / f"odd{seed}.jpg"
        factory.photo_like(seed, size).save(path, quality=90)
        paths.append(path)
    grey = folder / "grey.jpg"
    sample_photos["china"].convert("L").save(grey, quality=90)
    paths.append(grey)
    for subsampling, name in [(0, "444"), (1, "422")]:  # chroma at full and half width
        paths.append(folder / f"chroma{name}.jpg")
        sample_photos["flower"].save(paths[-1], quality=90, subsampling=subsampling)
    return paths


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _bad_huffman_jpeg() -> bytes:
    """A JPEG whose header opens but whose Huffman table is bogus: every decoder refuses it."""
    data = bytearray(factory.jpeg_bytes(seed=3, size=(120, 80)))
    table = data.index(b"\xff\xc4") + 5  # marker, length (2), class/id: then 16 code counts
    data[table : table + 16] = b"\xff" * 16
    return bytes(data)


def _cpu_reason(preprocessor: Preprocessor, path: Path) -> str:
    with pytest.raises(ImageRejected) as info:
        preprocessor.from_path(path)
    return info.value.reason


def _mean_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.cpu().float() - b.cpu().float()).abs().mean().item()


def test_pixels_match_the_cpu_preprocessor(device, pretrained_lite0, preprocessor, jpegs):
    decoder = JpegBatchDecoder(preprocessor, device)
    batch = decoder.load(jpegs, range(len(jpegs)))
    assert batch.failures == []
    assert batch.indices.tolist() == list(range(len(jpegs)))
    assert batch.pixels.shape == (len(jpegs), 224, 224, 3)
    assert batch.pixels.dtype == torch.uint8 and batch.pixels.device.type == device.type
    assert decoder.counts["device"] == len(jpegs)  # all decoded there, none fell back
    exact = Preprocessor(pretrained_lite0.data_config, draft=False)
    for pixels, path in zip(batch.pixels, jpegs, strict=True):
        # The CPU decodes big JPEGs at reduced scale (draft): close, not equal.
        assert _mean_abs(pixels, preprocessor.from_path(path)) < 3.0, path.name
        # Without draft only the resize arithmetic differs (float vs Pillow's 8-bit passes).
        assert _mean_abs(pixels, exact.from_path(path)) < 1.0, path.name


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.float().cpu(), b.float().cpu()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@torch.inference_mode()
def test_vectors_match_the_cpu_path(device, pretrained_lite0, preprocessor, jpegs):
    model = pretrained_lite0.to(device)
    normalize = PixelNormalizer(model.data_config, device)
    exact = Preprocessor(model.data_config, draft=False)

    def vectors(pixels: torch.Tensor) -> torch.Tensor:
        return model(normalize(pixels))

    try:
        decoded = JpegBatchDecoder(preprocessor, device).load(jpegs, range(len(jpegs)))
        on_device = vectors(decoded.pixels)
        full = vectors(torch.stack([exact.from_path(path) for path in jpegs]))
        draft = vectors(torch.stack([preprocessor.from_path(path) for path in jpegs]))
    finally:
        pretrained_lite0.to("cpu")
    assert _cosines(on_device, full).min().item() >= 0.999
    # The CPU's draft decode of the big photo moves its vector (cosine ~0.998 to a full
    # decode); the device path is exactly as far from it as the full CPU decode is.
    assert (_cosines(on_device, draft) - _cosines(full, draft)).abs().max().item() < 1e-3
    assert _cosines(on_device, draft).min().item() >= 0.99


def test_other_formats_take_the_cpu_path_in_position(device, preprocessor, jpegs, tmp_path):
    png = _write(tmp_path, "photo.png", factory.png_bytes(seed=4, size=(200, 150)))
    cmyk = _write(tmp_path, "print.jpg", factory.cmyk_jpeg_bytes())
    paths = [jpegs[0], png, jpegs[1], cmyk]
    decoder = JpegBatchDecoder(preprocessor, device)
    batch = decoder.load(paths, [10, 11, 12, 13])
    assert batch.indices.tolist() == [10, 11, 12, 13] and batch.failures == []
    assert decoder.counts["header"] == 2 and decoder.counts["device"] == 2
    assert batch.pixels.device.type == device.type
    assert torch.equal(batch.pixels[1].cpu(), preprocessor.from_path(png))  # the CPU's own
    assert torch.equal(batch.pixels[3].cpu(), preprocessor.from_path(cmyk))
    assert _mean_abs(batch.pixels[2], preprocessor.from_path(jpegs[1])) < 3.0


def test_bad_jpegs_fail_with_the_cpu_reason_and_the_rest_loads(device, preprocessor, jpegs,
                                                               tmp_path):
    truncated = _write(tmp_path, "short.jpg", factory.truncated_jpeg_bytes())
    bogus = _write(tmp_path, "bogus.jpg", _bad_huffman_jpeg())
    text = _write(tmp_path, "text.jpg", factory.text_bytes())
    paths = [jpegs[0], truncated, jpegs[1], bogus, jpegs[2], text]
    decoder = JpegBatchDecoder(preprocessor, device)
    batch = decoder.load(paths, range(len(paths)))
    assert batch.indices.tolist() == [0, 2, 4]
    assert batch.failures == [(1, _cpu_reason(preprocessor, truncated)),
                              (3, _cpu_reason(preprocessor, bogus)),
                              (5, _cpu_reason(preprocessor, text))]
    assert batch.failures[0][1] == "truncated image data"
    # The bogus table passes the header check: the device decoder refused it, then the CPU.
    assert decoder.counts["refused"] == 1 and decoder.counts["device"] == 3
    for pixels, path in zip(batch.pixels, [jpegs[0], jpegs[1], jpegs[2]], strict=True):
        assert _mean_abs(pixels, preprocessor.from_path(path)) < 3.0


def test_exif_orientation_is_applied_like_the_cpu_path(device, preprocessor, tmp_path):
    rotated = _write(tmp_path, "rotated.jpg", factory.exif_rotated_jpeg_bytes(size=(400, 200)))
    # Every orientation, on a picture with no symmetry (a photo-like one).
    oriented = []
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"orientation{orientation}.jpg"
        factory.photo_like(5, (300, 200)).save(path, quality=95, exif=exif.tobytes())
        oriented.append(path)
    decoder = JpegBatchDecoder(preprocessor, device)
    batch = decoder.load([rotated, *oriented], range(9))
    assert decoder.counts["device"] == 9
    upright = batch.pixels[0].cpu().float()
    red, blue = torch.tensor([255.0, 0, 0]), torch.tensor([0, 0, 255.0])
    # Stored red-left/blue-right with orientation 6: upright, red is on top, blue below.
    assert (upright[:100].mean((0, 1)) - red).abs().max() < 10
    assert (upright[-100:].mean((0, 1)) - blue).abs().max() < 10
    for pixels, path in zip(batch.pixels[1:], oriented, strict=True):
        assert _mean_abs(pixels, preprocessor.from_path(path)) < 3.0, path.name


def test_progressive_and_restart_marker_jpegs_match(device, preprocessor, sample_photos,
                                                   tmp_path):
    progressive = tmp_path / "progressive.jpg"
    sample_photos["china"].save(progressive, quality=90, progressive=True)
    restarts = tmp_path / "restarts.jpg"
    sample_photos["flower"].save(restarts, quality=90, restart_marker_blocks=4)
    decoder = JpegBatchDecoder(preprocessor, device)
    batch = decoder.load([progressive, restarts], [0, 1])
    assert batch.indices.tolist() == [0, 1]
    # Whichever decoder took them (nvJPEG may hand progressive files to the CPU), the
    # pixels are the CPU path's.
    assert decoder.counts["device"] + decoder.counts["refused"] == 2
    for pixels, path in zip(batch.pixels, [progressive, restarts], strict=True):
        assert _mean_abs(pixels, preprocessor.from_path(path)) < 3.0, path.name


def test_images_over_max_pixels_are_refused_with_the_cpu_reason(device, pretrained_lite0,
                                                                jpegs):
    small_limit = Preprocessor(pretrained_lite0.data_config, max_pixels=100_000)
    big = jpegs[3]  # 1600 x 1200
    batch = JpegBatchDecoder(small_limit, device).load([jpegs[4], big], [0, 1])
    assert batch.indices.tolist() == [0]
    assert batch.failures == [(1, _cpu_reason(small_limit, big))]
    assert batch.failures[0][1] == "image too large: 1600x1200 pixels exceeds limit 100000"


def test_every_image_failing_gives_no_pixels(device, preprocessor, tmp_path):
    text = _write(tmp_path, "a.jpg", factory.text_bytes())
    missing = tmp_path / "missing.jpg"
    batch = JpegBatchDecoder(preprocessor, device).load([text, missing], [7, 8])
    assert batch.pixels is None and batch.indices.tolist() == []
    assert [index for index, _ in batch.failures] == [7, 8]
    assert batch.failures[1][1] == _cpu_reason(preprocessor, missing)


def test_small_decode_chunks_give_the_same_pixels(device, preprocessor, jpegs):
    whole = JpegBatchDecoder(preprocessor, device).load(jpegs, range(len(jpegs)))
    one_by_one = JpegBatchDecoder(preprocessor, device, decode_pixels=1, workers=1)
    chunked = one_by_one.load(jpegs, range(len(jpegs)))
    assert torch.equal(whole.pixels, chunked.pixels)


@pytest.mark.parametrize(("size", "expected"), [
    ((480, 640), (256, 341)),  # landscape: shorter side to floor(224 / 0.875), longer truncated
    ((640, 480), (341, 256)),
    ((64, 96), (256, 384)),  # up-scaled
])
def test_resized_size_follows_timm(size, expected):
    assert resized_size(*size, (224, 224), 0.875) == expected


def test_non_square_input_and_crop_pct_follow_timm(device, pretrained_lite0, tmp_path):
    config = {**pretrained_lite0.data_config, "input_size": (3, 96, 128), "crop_pct": 0.9}
    preprocessor = Preprocessor(config, draft=False)
    paths = []
    for seed, size in enumerate([(300, 200), (200, 300), (128, 96)]):
        paths.append(tmp_path / f"{seed}.jpg")
        factory.photo_like(seed, size).save(paths[-1], quality=95)
    batch = JpegBatchDecoder(preprocessor, device, crop_pct=0.9).load(paths, range(3))
    assert batch.pixels.shape == (3, 96, 128, 3)
    for pixels, path in zip(batch.pixels, paths, strict=True):
        assert _mean_abs(pixels, preprocessor.from_path(path)) < 1.0, path.name


def test_bad_settings_are_refused(preprocessor):
    with pytest.raises(ValueError, match="interpolation must be one of bilinear, bicubic"):
        JpegBatchDecoder(preprocessor, "cpu", interpolation="lanczos")
    with pytest.raises(ValueError, match="indices"):
        JpegBatchDecoder(preprocessor, "cpu").load([Path("a.jpg")], [])


def test_gpu_decoding_available_only_on_a_working_cuda_device():
    assert gpu_decoding_available(torch.device("cpu")) is False
    if _CUDA:
        assert gpu_decoding_available("cuda") is True
        assert gpu_decoding_available(torch.device("cuda")) is True  # cached, same answer


def test_indices_are_the_given_ones_as_int64(device, preprocessor, jpegs):
    batch = JpegBatchDecoder(preprocessor, device).load(jpegs[:2], np.array([3, 9]))
    assert batch.indices.dtype == np.int64 and batch.indices.tolist() == [3, 9]

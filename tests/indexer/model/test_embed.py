"""Embedder: unit float32 vectors, batch independence, failures, precision, draft decoding.

Device comes from the environment ('auto'): the same tests run on a GPU when present.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.model.embed import Embedder


@pytest.fixture(scope="module")
def fp32(pretrained_lite0) -> Embedder:
    return Embedder(pretrained_lite0, precision="fp32", batch_size=8, workers=0)


def embed_all(embedder: Embedder, paths) -> tuple[np.ndarray, np.ndarray, list]:
    batches = list(embedder.embed_paths(paths))
    indices = np.concatenate([b.indices for b in batches])
    vectors = np.concatenate([b.vectors for b in batches])
    return indices, vectors, [f for b in batches for f in b.failures]


@pytest.fixture(scope="module")
def reference(fp32, photo_files) -> np.ndarray:
    """fp32 vectors of the three photo files, embedded in one batch."""
    indices, vectors, failures = embed_all(fp32, photo_files)
    assert failures == [] and indices.tolist() == [0, 1, 2]
    return vectors


def test_vectors_are_unit_float32_and_meaningful(reference):
    assert reference.dtype == np.float32 and reference.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-5)
    assert reference[0] @ reference[2] > reference[0] @ reference[1]  # crop of china is nearer


def test_vectors_are_deterministic_and_independent_of_batching(
    pretrained_lite0, photo_files, reference
):
    one_by_one = Embedder(pretrained_lite0, precision="fp32", batch_size=1, workers=0)
    _, singles, _ = embed_all(one_by_one, [photo_files[0], photo_files[2]])
    np.testing.assert_allclose(singles, reference[[0, 2]], atol=2e-5)
    _, again, _ = embed_all(one_by_one, [photo_files[0]])
    np.testing.assert_array_equal(again, singles[:1])


def test_embed_images_matches_embed_paths(fp32, photo_files, reference):
    from PIL import Image

    with Image.open(photo_files[1]) as image:
        from_image = fp32.embed_images([image.convert("RGB")])
    assert from_image.dtype == np.float32
    np.testing.assert_allclose(from_image[0], reference[1], atol=2e-5)
    assert fp32.embed_images([]).shape == (0, 1280)


CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("loader, device, tensor_decode", [
    pytest.param("process", "cpu", False, id="process"),
    pytest.param("thread", "cpu", False, id="thread-pillow"),
    pytest.param("thread", "cpu", True, id="thread-torchvision"),
    pytest.param("auto", "cuda", True, id="cuda-nvjpeg" if CUDA else "cuda-absent-skipped",
                 marks=pytest.mark.skipif(not CUDA, reason="CUDA absent")),
])
def test_bad_files_are_reported_and_the_rest_embedded(
    pretrained_lite0, photo_files, tmp_path, loader, device, tensor_decode
):
    """Also the JPEG batch decoders' fallback: what they refuse takes the Pillow path."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo_files[1].read_bytes()[:2000])
    paths = [photo_files[0], corrupt, tmp_path / "missing.jpg", truncated, photo_files[1]]
    png = tmp_path / "photo.png"
    Image.open(photo_files[0]).save(png)
    paths.append(png)
    embedder = Embedder(pretrained_lite0, device=device, precision="fp32", batch_size=8,
                        workers=1, loader=loader, tensor_decode=tensor_decode)
    assert (embedder.batch_decoder is not None) == (tensor_decode and loader != "process")
    indices, vectors, failures = embed_all(embedder, paths)
    assert indices.tolist() == [0, 4, 5]
    assert vectors.shape == (3, 1280)
    assert float(vectors[0] @ vectors[2]) > 0.999  # the PNG is the first photo
    reasons = dict(failures)
    assert sorted(reasons) == [1, 2, 3]
    assert "not found" in reasons[2] and "truncated" in reasons[3]


def test_batch_where_every_image_fails_yields_no_vectors(fp32, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    (batch,) = fp32.embed_paths([bad])
    assert batch.vectors.shape == (0, 1280) and batch.vectors.dtype == np.float32
    assert batch.failures[0][0] == 0
    assert list(fp32.embed_paths([])) == []


def test_bf16_autocast_matches_fp32(pretrained_lite0, photo_files, reference):
    bf16 = Embedder(pretrained_lite0, precision="bf16", batch_size=8, workers=0)
    _, low, _ = embed_all(bf16, photo_files[:2])
    assert low.dtype == np.float32
    cosines = np.sum(low * reference[:2], axis=1)
    assert cosines.min() >= 0.999, cosines


def test_jpeg_draft_decoding_stays_close_to_full_decode(fp32, pretrained_lite0, sample_photos,
                                                        tmp_path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    sample_photos["china"].resize((2560, 1707), Image.Resampling.BICUBIC).save(big, quality=90)
    full = Embedder(pretrained_lite0, precision="fp32", workers=0, draft=False)
    _, a, _ = embed_all(fp32, [big])
    _, b, _ = embed_all(full, [big])
    assert float(a[0] @ b[0]) >= 0.99


def test_auto_loader_is_threads_on_cpu_and_explicit_choice_is_kept(pretrained_lite0):
    cpu = dict(device="cpu", precision="fp32")
    assert Embedder(pretrained_lite0, **cpu).loader == "thread"
    assert Embedder(pretrained_lite0, loader="process", **cpu).loader == "process"


def test_invalid_arguments_are_refused(pretrained_lite0):
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(pretrained_lite0, batch_size=0)
    with pytest.raises(ValueError, match="process, thread"):
        Embedder(pretrained_lite0, loader="fibers")


@pytest.mark.parametrize("tensor_decode", [False, True], ids=["pillow", "torchvision"])
def test_file_pixels_are_the_pixels_embed_paths_embeds(pretrained_lite0, photo_files,
                                                       tensor_decode, tmp_path):
    embedder = Embedder(pretrained_lite0, precision="fp32", runtime="torch", batch_size=4,
                        workers=1, loader="thread", tensor_decode=tensor_decode)
    assert (embedder.batch_decoder is not None) == tensor_decode
    _, vectors, _ = embed_all(embedder, photo_files)
    for path, vector in zip(photo_files, vectors, strict=True):
        pixels = embedder.file_pixels(path)
        assert pixels.dtype == torch.uint8 and pixels.shape == (224, 224, 3)
        np.testing.assert_allclose(embedder.runtime.run_one(pixels[None].numpy())[0], vector,
                                   atol=2e-5)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg at all")
    from indexer.images import ImageRejected

    with pytest.raises(ImageRejected):
        embedder.file_pixels(bad)

"""indexer.model.preprocess: timm's eval transform, draft decoding, the shared decoder's guards."""

from __future__ import annotations

import images_factory
import numpy as np
import pytest
import timm.data
import torch
from PIL import Image

from indexer.images import ImageRejected
from indexer.model.preprocess import PixelNormalizer, Preprocessor


def test_preprocessing_matches_timm_eval_transform(pretrained_lite0, sample_photos):
    """One resample of the crop box instead of resize-then-crop: the same pixels up to
    Pillow's rounding (a level or three on a few pixels), the same vectors."""
    from PIL import Image

    config = pretrained_lite0.data_config
    reference = timm.data.create_transform(**config, is_training=False, use_prefetcher=True)
    pre = Preprocessor(config)
    photo = sample_photos["china"]
    shapes = [photo, photo.resize((348, 348)), photo.resize((300, 500)), photo.resize((250, 240)),
              photo.resize((1000, 37)), sample_photos["flower"]]
    ours = torch.stack([pre.from_image(image) for image in shapes])
    timms = torch.stack([reference(image).permute(1, 2, 0) for image in shapes])
    difference = (ours.int() - timms.int()).abs()
    assert difference.max() <= 3
    assert difference.float().mean() < 0.5
    assert difference[1].max() == 0  # a square photo: exactly timm's pixels
    normalize = PixelNormalizer(config, torch.device("cpu"))
    with torch.inference_mode():
        a, b = pretrained_lite0(normalize(ours)), pretrained_lite0(normalize(timms))
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.9999
    assert Image.fromarray(ours[0].numpy()).size == (224, 224)


def test_big_jpegs_decode_at_reduced_scale_never_below_the_resize(pretrained_lite0,
                                                                   sample_photos, tmp_path):
    from PIL import Image

    big = tmp_path / "big.jpg"
    sample_photos["china"].resize((2560, 1707), Image.Resampling.BICUBIC).save(big, quality=90)
    config = pretrained_lite0.data_config
    assert Preprocessor(config).open(big).size == (640, 427)  # 1/4 scale, short side >= 256
    assert Preprocessor(config, draft=False).open(big).size == (2560, 1707)


def test_the_embedding_path_refuses_decompression_bombs(pretrained_lite0, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(images_factory.png_bomb_bytes(30000, 30000))
    with pytest.raises(ImageRejected, match="900000000 pixels exceeds limit 40000000"):
        Preprocessor(pretrained_lite0.data_config).from_path(bomb)
    modest = tmp_path / "modest.png"
    modest.write_bytes(images_factory.png_bomb_bytes(3000, 3000))
    with pytest.raises(ImageRejected, match="3000x3000 pixels exceeds limit 1000000"):
        Preprocessor(pretrained_lite0.data_config, max_pixels=1_000_000).from_path(modest)


def test_the_embedding_path_keeps_the_format_allow_list(pretrained_lite0, tmp_path):
    eps = tmp_path / "drawing.jpg"
    eps.write_bytes(images_factory.eps_bytes())
    with pytest.raises(ImageRejected, match="format EPS not allowed"):
        Preprocessor(pretrained_lite0.data_config).open(eps)
    with pytest.raises(ImageRejected, match="file not found"):
        Preprocessor(pretrained_lite0.data_config).open(tmp_path / "missing.jpg")


def test_the_crop_box_is_the_part_of_the_photo_the_model_sees(pretrained_lite0):
    preprocessor = Preprocessor(pretrained_lite0.data_config)  # 224 of 256 (crop_pct 0.875)
    assert preprocessor.crop_box(320, 320) == (20.0, 20.0, 300.0, 300.0)
    # 640x320: the short side to 256 (x0.8), then the centre 224 x 224 of 512 x 256
    assert preprocessor.crop_box(640, 320) == (180.0, 20.0, 460.0, 300.0)
    assert preprocessor.crop_box(320, 640) == (20.0, 180.0, 300.0, 460.0)
    # Those pixels, resampled, are the model's input.
    photo = images_factory.photo_like(seed=2, size=(640, 320))
    expected = photo.resize((224, 224), Image.Resampling.BICUBIC,
                            box=preprocessor.crop_box(640, 320))
    assert torch.equal(preprocessor.from_image(photo), torch.from_numpy(np.array(expected)))

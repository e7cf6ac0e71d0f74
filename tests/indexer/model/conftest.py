"""Fixtures for the model tests: the real pretrained backbone (loaded once) and real photos.

The photos are scikit-learn's bundled samples (``china.jpg``: a palace, ``flower.jpg``:
a daisy), so the weight-mapping check needs no network and no dataset download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _sample(name: str) -> Image.Image:
    from sklearn.datasets import load_sample_image

    return Image.fromarray(np.asarray(load_sample_image(name)))


@pytest.fixture(scope="session")
def sample_photos() -> dict[str, Image.Image]:
    """Two real photos as RGB PIL images."""
    return {name: _sample(f"{name}.jpg") for name in ("china", "flower")}


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory: pytest.TempPathFactory, sample_photos) -> list[Path]:
    """Three JPEG files: the two photos and a crop of the first."""
    folder = tmp_path_factory.mktemp("photos")
    images = [sample_photos["china"], sample_photos["flower"],
              sample_photos["china"].crop((100, 50, 500, 400))]
    paths = []
    for i, image in enumerate(images):
        path = folder / f"photo{i}.jpg"
        image.save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def pretrained_lite0():
    """The default model: lite0's pooled ImageNet features (about 0.3 s to build)."""
    from indexer.model.modeldir import pretrained_model

    return pretrained_model("tf_efficientnet_lite0")

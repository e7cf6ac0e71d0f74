"""Fixtures for the model tests: the real pretrained backbone (loaded once) and real photos.

The photos are scikit-learn's bundled samples (``china.jpg``: a palace, ``flower.jpg``:
a daisy), so the weight-mapping check needs no network and no dataset download.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run the model tests on one torch thread, restoring the setting afterwards.

    These tests run tiny batches, many small parallel regions each. On busy shared
    cores every region waits for a descheduled thread: with 2 threads the suite took
    33 s (one emulated-bf16 test alone 42 s) against 16 s on one thread.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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

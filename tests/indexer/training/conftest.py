"""Tiny data and a tiny model: timm's ``test_efficientnet`` (99k parameters, random
weights) on generated class photos, so a whole training run takes about a second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import images_factory
import pytest
import torch

from indexer.config import Settings


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Bit-for-bit comparisons need the same reduction order every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """10 classes of 6 photos: 5 train classes (1 held out to validate), 5 test."""
    return images_factory.write_labelled_folder(tmp_path / "photos", classes=10, per_class=6)


@pytest.fixture
def train_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", precision="fp32", loader_workers=0)

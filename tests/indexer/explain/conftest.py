"""Engines whose search scores are PyTorch's float32 cosines (runtime torch, fp32), so
the explanations can be held to them; and real photos for the occlusion check.

The photos are scikit-learn's bundled samples (a palace, a daisy): no download.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.config import Settings
from indexer.engine import Lookalike


def exact_settings(home: Path, **overrides) -> Settings:
    """Settings whose search scores are float32 PyTorch cosines."""
    values = dict(home=home, database_url=None, device="cpu", runtime="torch",
                  precision="fp32", batch_size=8)
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def open_exact(tmp_path_factory) -> Iterator[Callable[..., Lookalike]]:
    """``open_exact(name, **settings)``: an engine on a fresh home, closed at the end."""
    opened: list[Lookalike] = []

    def open_engine(name: str, **overrides) -> Lookalike:
        home = tmp_path_factory.mktemp(name) / "home"
        engine = Lookalike.open(exact_settings(home, **overrides))
        opened.append(engine)
        return engine

    yield open_engine
    for engine in opened:
        engine.close()


@pytest.fixture(scope="session")
def pretrained_engine(open_exact, sample_catalogue) -> Lookalike:
    """The pretrained lite0 on 12 ingested sample shots (4 products x 3). Do not change it."""
    engine = open_exact("pretrained")
    engine.ingest(sample_catalogue(products=4, shots=3, seed=3))
    return engine


@pytest.fixture(scope="session")
def real_photos() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_image

    return {name: Image.fromarray(np.asarray(load_sample_image(f"{name}.jpg")))
            for name in ("china", "flower")}


@pytest.fixture(scope="session")
def sharing_pretrained(open_exact, pretrained_engine) -> Callable[..., Lookalike]:
    """``sharing_pretrained(name)``: an empty home on the already loaded pretrained model."""

    def open_engine(name: str) -> Lookalike:
        engine = open_exact(name)
        engine.__dict__["model"] = pretrained_engine.model
        engine.__dict__["embedder"] = pretrained_engine.embedder
        return engine

    return open_engine

"""indexer.training.inputs: all views of a photo from one decode, as view by view."""

from __future__ import annotations

import torch
from training_factory import tiny_config

from indexer.model.preprocess import Preprocessor
from indexer.training.data import read_labelled
from indexer.training.inputs import all_views, load_views
from indexer.training.trainer import load_initial_backbone


def test_all_views_from_one_decode_equal_the_views_one_by_one(labelled):
    images = read_labelled([labelled])[:5]
    _, data_config = load_initial_backbone(tiny_config())
    preprocessor = Preprocessor(data_config)
    positions = [0, 3, 4]
    together = all_views(images, positions, 4, preprocessor, seed=7, salt=0)
    assert len(together) == 4
    for view, pixels in enumerate(together):
        alone = load_views(images, positions, [view] * 3, preprocessor, seed=7, salt=0)
        assert pixels.dtype == torch.uint8 and torch.equal(pixels, alone)
    assert not torch.equal(together[0], together[2])  # a random crop is not the plain view

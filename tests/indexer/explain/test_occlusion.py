"""Occlusion checks the decomposition: on real photos (overlapping crops of a palace and
of a daisy) the two methods' maps rank the cells alike.

Measured on this machine: Spearman 0.69 / 0.36 (palace query / result), 0.83 / 0.51
(daisy); the thresholds leave room for the last digits of a runtime, not for a
different picture.
"""

import io

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from indexer.explain.occlusion import DEFAULT_PATCH, occluded_copies

pytestmark = pytest.mark.slow

CROPS = {  # (result crop, query crop) of each photo: they overlap, not exactly
    "china": ((60, 30, 460, 380), (160, 80, 600, 420)),
    "flower": ((80, 40, 500, 400), (0, 0, 420, 360)),
}


@pytest.fixture(scope="module")
def photo_pairs(sharing_pretrained, real_photos, tmp_path_factory):
    engine = sharing_pretrained("photos")
    folder = tmp_path_factory.mktemp("photos") / "real"
    folder.mkdir()
    queries = {}
    for name, (result_crop, query_crop) in CROPS.items():
        real_photos[name].crop(result_crop).save(folder / f"{name}.jpg", quality=95)
        buffer = io.BytesIO()
        real_photos[name].crop(query_crop).save(buffer, "PNG")
        queries[name] = buffer.getvalue()
    engine.ingest(folder.parent)
    ids = {item.source_url.rsplit("/", 1)[-1].removesuffix(".jpg"): item.id
           for item in engine.catalog.items_with_status("indexed")}
    return engine, [(queries[name], ids[name]) for name in CROPS]


def test_occlusion_and_decomposition_maps_correlate(photo_pairs):
    engine, pairs = photo_pairs
    correlations = []
    for query, item_id in pairs:
        exact = engine.explain(query, item_id)
        occluded = engine.explain(query, item_id, method="occlusion")
        assert occluded.score == pytest.approx(exact.score, abs=1e-5)  # the same pair's cosine
        assert occluded.query_heatmap.shape == exact.query_heatmap.shape == (7, 7)
        for side in ("query_heatmap", "result_heatmap"):
            rho = spearmanr(getattr(exact, side).ravel(), getattr(occluded, side).ravel())[0]
            correlations.append(rho)
    assert min(correlations) >= 0.3, correlations
    assert np.mean(correlations) >= 0.5, correlations


def test_each_copy_blurs_one_patch_centred_on_its_cell():
    x = torch.randn(3, 224, 224)
    copies = occluded_copies(x, DEFAULT_PATCH, 32)
    assert copies.shape == (49, 3, 224, 224)
    changed = (copies != x).any(dim=1)  # (49, H, W)
    rows, cols = np.nonzero(changed[8].numpy())  # cell (1, 1): pixels 32-63, patch 24-71
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (24, 71, 24, 71)
    rows, cols = np.nonzero(changed[0].numpy())  # a corner's patch is cut at the edge
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 39, 0, 39)

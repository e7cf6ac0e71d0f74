"""On the same product pasted at different places on different backgrounds, most of each
map's positive mass lies on the product, with either method.

A map cell's mass is spread over its box in the photo (the returned crop box, cut in
equal rows and columns); the share inside the product's box is compared with 60% and
with the share a uniform map would put there (the product's part of the crop).
"""

import io

import numpy as np
import pytest
from images_factory import distinct_product, gradient_background, pasted

from indexer.explain import METHODS, cell_boxes

pytestmark = pytest.mark.slow

# (background seed, product position) of the query and of the catalogued result
PAIRS = [((1, (30, 40)), (2, (114, 104))), ((3, (114, 30)), (4, (40, 114))),
         ((5, (60, 100)), (6, (100, 30))), ((7, (20, 20)), (8, (124, 124)))]
# Measured (query, result) shares: decomposition 0.62 to 0.66, occlusion 0.65 to 0.91;
# a uniform map would put 0.40 there.


def share_inside(heatmap: np.ndarray, cells: np.ndarray, box) -> float:
    positive = np.clip(heatmap, 0, None)
    overlap_x = np.clip(np.minimum(cells[..., 2], box[2]) - np.maximum(cells[..., 0], box[0]),
                        0, None)
    overlap_y = np.clip(np.minimum(cells[..., 3], box[3]) - np.maximum(cells[..., 1], box[1]),
                        0, None)
    area = (cells[..., 2] - cells[..., 0]) * (cells[..., 3] - cells[..., 1])
    return float((positive * overlap_x * overlap_y / area).sum() / positive.sum())


def area_share(crop, box) -> float:
    width = min(crop[2], box[2]) - max(crop[0], box[0])
    height = min(crop[3], box[3]) - max(crop[1], box[1])
    return width * height / ((crop[2] - crop[0]) * (crop[3] - crop[1]))


@pytest.fixture(scope="module")
def pasted_pairs(sharing_pretrained, tmp_path_factory):
    """The engine with each pair's result stored; (query PNG bytes, boxes, item id)."""
    engine = sharing_pretrained("pasted")
    folder = tmp_path_factory.mktemp("pasted") / "product"
    folder.mkdir()
    product = distinct_product()
    pairs = []
    for number, ((query_seed, query_at), (result_seed, result_at)) in enumerate(PAIRS):
        result, result_box = pasted(product, gradient_background(result_seed), result_at)
        result.save(folder / f"shot-{number}.jpg", quality=95)
        query, query_box = pasted(product, gradient_background(query_seed), query_at)
        buffer = io.BytesIO()
        query.save(buffer, "PNG")
        pairs.append((buffer.getvalue(), query_box, result_box, folder / f"shot-{number}.jpg"))
    engine.ingest(folder.parent)
    ids = {item.source_url.rsplit("/", 1)[-1]: item.id
           for item in engine.catalog.items_with_status("indexed")}
    return engine, [(q, qb, rb, ids[path.name]) for q, qb, rb, path in pairs]


@pytest.mark.parametrize("method", METHODS)
def test_most_of_each_map_lies_on_the_product(pasted_pairs, method):
    engine, pairs = pasted_pairs
    for query, query_box, result_box, item_id in pairs:
        explained = engine.explain(query, item_id, method=method)
        assert explained.query_size == explained.result_size == (320, 320)
        assert explained.query_box == explained.result_box == (20.0, 20.0, 300.0, 300.0)
        for side, box in (("query", query_box), ("result", result_box)):
            heatmap = getattr(explained, f"{side}_heatmap")
            crop = getattr(explained, f"{side}_box")
            inside = share_inside(heatmap, cell_boxes(crop, heatmap.shape), box)
            uniform = area_share(crop, box)  # ~0.40 for these pairs
            assert inside >= 0.6, (method, side, inside)
            assert inside >= uniform + 0.15, (method, side, inside, uniform)

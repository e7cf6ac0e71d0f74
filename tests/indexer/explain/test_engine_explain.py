"""``Lookalike.explain``'s refusals: items that are not there, vectors, unknown methods."""

import numpy as np
import pytest
from PIL import Image

from indexer.explain import UnknownResultItem
from indexer.search import ItemQuery, UnknownItem

pytestmark = pytest.mark.slow


def test_refusals_name_what_is_wrong(sharing_pretrained, sample_catalogue):
    engine = sharing_pretrained("refusals")
    engine.ingest(sample_catalogue(products=2, shots=2, seed=7))
    first, second, third = engine.catalog.items_with_status("indexed")[:3]
    query = Image.open(engine.settings.home / first.stored_path)
    with pytest.raises(UnknownResultItem, match=f"no item {'c' * 64}"):
        engine.explain(query, "c" * 64)
    with pytest.raises(UnknownItem, match=f"no item {'d' * 64}") as raised:
        engine.explain(ItemQuery("d" * 64), second.id)
    assert not isinstance(raised.value, UnknownResultItem)  # the query's, not the result's
    with pytest.raises(ValueError, match="not a vector"):
        engine.explain(engine.item_vector(first.id)[0], second.id)
    with pytest.raises(ValueError, match="decomposition, occlusion"):
        engine.explain(query, second.id, method="gradcam")

    engine.delete(second.id)
    with pytest.raises(UnknownResultItem, match="no item"):
        engine.explain(query, second.id)
    (engine.settings.home / third.stored_path).unlink()
    with pytest.raises(UnknownResultItem, match="has no stored image"):
        engine.explain(query, third.id)


def test_a_pil_image_and_an_item_query_of_the_same_photo_agree(pretrained_engine):
    first, second = pretrained_engine.catalog.items_with_status("indexed")[:2]
    photo = Image.open(pretrained_engine.settings.home / first.stored_path)
    by_image = pretrained_engine.explain(photo, second.id)
    by_item = pretrained_engine.explain(first, second.id)
    assert by_image.score == pytest.approx(by_item.score, abs=1e-3)  # decoders: Pillow, torch
    assert by_image.query_size == by_item.query_size == (first.width, first.height)
    np.testing.assert_allclose(by_image.result_heatmap, by_item.result_heatmap, atol=1e-3)

"""The decomposition is exact: each map sums to the engine's own cosine for the pair,
for the pretrained backbone and for trained models (head only, blended at two cuts)."""

import numpy as np
import pytest
import torch

from indexer.explain import NotDecomposable, cell_shares, decompose, feature_maps
from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.modeldir import EmbeddingModel, load_model_dir, save_model_dir
from indexer.search import ItemQuery

pytestmark = pytest.mark.slow


def assert_sums_to_search_scores(engine, query, hits):
    for hit in hits:
        explained = engine.explain(query, hit.item.id)
        assert explained.score == pytest.approx(hit.score, abs=1e-4)
        assert explained.search_score == pytest.approx(hit.score, abs=1e-6)
        assert float(explained.query_heatmap.sum()) == pytest.approx(explained.score, abs=1e-5)
        assert float(explained.result_heatmap.sum()) == pytest.approx(explained.score, abs=1e-5)


def test_pretrained_maps_sum_to_the_search_score(pretrained_engine, sample_catalogue):
    query = sorted(sample_catalogue(products=4, shots=3, seed=3).rglob("*.jpg"))[4]
    found = pretrained_engine.search(query, k=12)
    assert len(found) == 12
    hits = [*found.hits[:3], found.hits[-1]]  # itself, its product's shots, the least alike
    assert_sums_to_search_scores(pretrained_engine, query, hits)
    explained = pretrained_engine.explain(query, hits[0].item.id)
    assert explained.query_heatmap.shape == explained.result_heatmap.shape == (7, 7)
    assert explained.score == pytest.approx(1.0, abs=1e-4)  # the photo is its own result


def test_an_item_query_uses_the_items_stored_original(pretrained_engine):
    items = pretrained_engine.catalog.items_with_status("indexed")
    query = ItemQuery(items[0].id)
    hits = pretrained_engine.search(query, k=12).hits
    assert_sums_to_search_scores(pretrained_engine, query, [hits[1], hits[-1]])


def tiny_trained(directory, *, blend_stages, weight=0.5, seed=1):
    """test_efficientnet with a linear head, blended with its pretrained tail or not."""
    torch.manual_seed(seed)
    backbone = build_backbone("test_efficientnet").eval()
    head = torch.nn.Linear(int(backbone.num_features), 8)
    model = EmbeddingModel(backbone, head, architecture="test_efficientnet",
                           data_config=backbone_data_config(backbone))
    if blend_stages is not None:
        model.add_pretrained_blend(blend_stages, weight)
    save_model_dir(directory, model, loss="softtriple")
    return directory


TRAINED = {"blend-1-stage": dict(blend_stages=1), "blend-0-stages": dict(blend_stages=0,
           weight=0.3), "head-only": dict(blend_stages=None)}  # fmt: skip


@pytest.mark.parametrize("kind", TRAINED)
def test_trained_maps_sum_to_the_search_score(kind, tmp_path, open_exact, sample_catalogue):
    directory = tiny_trained(tmp_path / kind, **TRAINED[kind])
    engine = open_exact(f"trained-{kind}", model=str(directory))
    engine.ingest(sample_catalogue(products=3, shots=2, seed=5))
    query = sorted(sample_catalogue(products=3, shots=2, seed=5).rglob("*.jpg"))[0]
    hits = engine.search(query, k=6).hits
    assert (engine.model.blend is None) == (TRAINED[kind]["blend_stages"] is None)
    assert engine.model.head is not None
    assert_sums_to_search_scores(engine, query, hits)
    assert engine.explain(query, hits[0].item.id).query_heatmap.shape == (5, 5)  # 160 px / 32


@pytest.mark.parametrize("kind", TRAINED)
def test_cell_shares_sum_to_the_models_vector(kind, tmp_path):
    model = load_model_dir(tiny_trained(tmp_path / kind, **TRAINED[kind]))
    x = torch.randn(3, 3, 160, 160)
    with torch.inference_mode():
        vectors = model(x)
    shares = cell_shares(model, feature_maps(model, x))
    np.testing.assert_allclose(shares.sum(dim=(1, 2)).numpy(), vectors.numpy(), atol=1e-5)
    score, query_map, result_map = decompose(shares[0], shares[1])
    assert score == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    # Row sums and column sums of the one cell-pair matrix: the full matrix agrees.
    pairs = shares[0].flatten(0, 1) @ shares[1].flatten(0, 1).T
    np.testing.assert_allclose(query_map.flatten().numpy(), pairs.sum(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(result_map.flatten().numpy(), pairs.sum(0).numpy(), atol=1e-6)


def test_a_model_without_average_pooling_is_refused():
    import timm

    backbone = timm.create_model("test_efficientnet", pretrained=False, num_classes=0,
                                 global_pool="max")
    model = EmbeddingModel(backbone.eval(), architecture="test_efficientnet",
                           data_config=backbone_data_config(backbone))
    with pytest.raises(NotDecomposable, match="average pooling.*occlusion"):
        feature_maps(model, torch.randn(1, 3, 160, 160))


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("kind", ["pretrained", "blend-1-stage"])
def test_feature_maps_on_the_searchs_runtime_still_sum_to_its_scores(
        runtime, kind, tmp_path, open_exact, sample_catalogue):
    """Where the search runs an exported graph, the feature maps come from a second
    graph on the same runtime (checked against PyTorch): in fp32 the maps still add up
    to the search's scores, and they match PyTorch's maps."""
    model = ("pretrained" if kind == "pretrained"
             else str(tiny_trained(tmp_path / kind, **TRAINED[kind])))
    engine = open_exact(f"{runtime}-{kind}", runtime=runtime, model=model)
    engine.ingest(sample_catalogue(products=3, shots=2, seed=5))
    query = sorted(sample_catalogue(products=3, shots=2, seed=5).rglob("*.jpg"))[1]
    hits = engine.search(query, k=6).hits
    assert_sums_to_search_scores(engine, query, [hits[0], hits[-1]])
    explainer = engine.explainer
    maps_runtime = explainer._runtime()
    assert maps_runtime is not None and maps_runtime.name == runtime
    pixels = torch.stack([explainer.image(engine._query_image(query)).pixels])
    x = explainer.normalize(pixels)
    torch_maps = feature_maps(explainer.model, x).flatten()
    graph_maps = explainer.maps(pixels).flatten()
    assert float(torch.nn.functional.cosine_similarity(torch_maps, graph_maps, dim=0)) > 0.9999

"""Model directories: pretrained version string, save/load round trip, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from indexer.config import Settings
from indexer.fsutil import sha256_file
from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.card import CardError
from indexer.model.modeldir import (
    WEIGHTS_FILE,
    EmbeddingModel,
    ModelNotFound,
    load_model,
    save_model_dir,
)
from indexer.model.weights import WeightsError, packaged_weights_path


@pytest.fixture(scope="module")
def headed_model() -> EmbeddingModel:
    """Random lite0 + random linear head to 64-d: the shape a trained model has."""
    torch.manual_seed(0)
    backbone = build_backbone("tf_efficientnet_lite0").eval()
    return EmbeddingModel(
        backbone, nn.Linear(backbone.num_features, 64),
        architecture="tf_efficientnet_lite0", data_config=backbone_data_config(backbone),
    ).eval()


def test_pretrained_version_names_the_weights_hash(pretrained_lite0):
    digest = sha256_file(packaged_weights_path("tf_efficientnet_lite0"))
    assert pretrained_lite0.version == f"tf_efficientnet_lite0-in1k-pooled-{digest[:8]}"
    card = pretrained_lite0.card
    assert (card.embedding_dim, card.head, card.loss, card.training_data) == (1280, None, None,
                                                                              None)
    assert card.data_config["mean"] == (0.5, 0.5, 0.5)


def test_unsaved_model_has_no_version(headed_model):
    fresh = EmbeddingModel(headed_model.backbone, headed_model.head,
                           architecture="tf_efficientnet_lite0",
                           data_config=headed_model.data_config)
    with pytest.raises(RuntimeError, match="save"):
        _ = fresh.version


def test_save_load_round_trip_with_linear_head(settings, headed_model):
    directory = settings.models_dir / "shelf-v1"
    card = save_model_dir(directory, headed_model, loss={"name": "softtriple", "centers": 10},
                          training_data={"sha256": "ab" * 32, "classes": 5},
                          metrics={"recall@1": 0.5})
    assert card.version.startswith("tf_efficientnet_lite0-softtriple-d64-")
    on_disk = json.loads((directory / "card.json").read_text())
    assert on_disk["version"] == card.version and on_disk["embedding_dim"] == 64
    assert on_disk["data_config"]["input_size"] == [3, 224, 224]

    by_path = load_model(str(directory), settings)
    by_name = load_model("shelf-v1", settings)  # a name under models_dir
    for loaded in (by_path, by_name):
        assert (loaded.dim, loaded.version) == (64, card.version)
        assert loaded.data_config == headed_model.data_config
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected, got = headed_model(x), by_name(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_explicit_version_is_kept(tmp_path, headed_model):
    card = save_model_dir(tmp_path / "m", headed_model, version="shelf-2024-06")
    assert load_model(str(tmp_path / "m"), Settings(home=tmp_path, _env_file=None)).version == (
        "shelf-2024-06"
    )
    assert card.loss is None


def test_damaged_weights_refuse_to_load(tmp_path, headed_model, settings):
    save_model_dir(tmp_path / "m", headed_model)
    weights = tmp_path / "m" / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_model(str(tmp_path / "m"), settings)


def test_unknown_model_lists_available(settings, headed_model):
    save_model_dir(settings.models_dir / "shelf-v1", headed_model)
    with pytest.raises(ModelNotFound, match="pretrained, shelf-v1"):
        load_model("shelf-v2", settings)


def test_directory_without_card_is_refused(tmp_path, settings):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CardError, match=r"card\.json"):
        load_model(str(tmp_path / "empty"), settings)

"""A whole run: data in, a model directory out that the embedder and the index use."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from training_factory import tiny_config

from indexer.engine import Lookalike
from indexer.index.errors import IndexLoadError
from indexer.model.card import read_card
from indexer.model.embed import Embedder
from indexer.model.modeldir import (
    PRETRAINED,
    ModelNotFound,
    current_model_spec,
    list_models,
    load_model,
    load_model_dir,
    use_model,
)
from indexer.training.checkpoint import CheckpointError
from indexer.training.run import train_model


def test_a_run_writes_a_complete_model_directory(labelled, train_settings):
    config = tiny_config(validation_fraction=0.4)
    outcome = train_model([labelled], train_settings, config)

    assert outcome.model_dir.parent == train_settings.models_dir
    run_dir = train_settings.home / "runs" / "softtriple-seed0"
    assert (run_dir / "checkpoint.pt").is_file()
    assert not list(run_dir.glob("inputs-*"))  # trunk caches go once the model is saved
    card = read_card(outcome.model_dir)
    assert card.version == outcome.model_dir.name == outcome.card.version
    assert card.architecture == "test_efficientnet"
    assert card.embedding_dim == 8 + 256  # learned half + pretrained half of the blend
    assert card.blend == {"pretrained_weight": 0.5, "train_stages": 1, "pretrained_dim": 256}
    assert card.data_config["input_size"] == (3, 160, 160)
    assert card.loss == {"name": "softtriple", "centers_per_class": 10, "la": 20.0,
                         "gamma": 0.1, "margin": 0.01}
    data = card.training_data
    assert data["fingerprint"] == outcome.data.fingerprint()
    assert data["classes"]["test"] == [f"class-{i:02d}" for i in range(5, 10)]
    assert len(data["classes"]["validation"]) == 2
    test = card.metrics["test"]
    assert set(test) >= {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8",
                         "map_at_r", "r_precision", "nmi"}
    assert test["queries"] == 30 and test["classes"] == 5
    assert card.metrics["test_split"] == {"name": "halves", "file": None, "sha256": None,
                                          "classes": 5, "images": 30}
    assert card.metrics["best_epoch"] in (1, 2, 3)
    assert card.training["config"]["loss"] == "softtriple"
    assert len(card.training["history"]) == 3
    json.dumps(card.training)  # all of it JSON

    # The directory loads back to the same function, and the embedder runs it.
    reloaded = load_model_dir(outcome.model_dir)
    images = torch.rand(3, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(outcome.result.model(images), reloaded(images), atol=1e-6)
    vectors = Embedder(reloaded, device="cpu", precision="fp32", workers=0).embed_images(
        [Image.open(next(labelled.rglob("*.jpg")))])
    assert vectors.shape == (1, 264)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_blend_halves_are_weighted_unit_vectors(labelled, train_settings):
    outcome = train_model([labelled], train_settings, tiny_config(epochs=1,
                                                                  pretrained_weight=0.3))
    with torch.no_grad():
        vectors = outcome.result.model(torch.rand(4, 3, 160, 160))
    learned, pretrained = vectors[:, :8], vectors[:, 8:]
    assert torch.allclose(learned.norm(dim=1), torch.full((4,), 0.7 ** 0.5), atol=1e-5)
    assert torch.allclose(pretrained.norm(dim=1), torch.full((4,), 0.3 ** 0.5), atol=1e-5)


def test_without_a_blend_the_vectors_are_the_head_alone(labelled, train_settings):
    outcome = train_model([labelled], train_settings,
                          tiny_config(epochs=1, pretrained_weight=0.0, dim=12))
    card = read_card(outcome.model_dir)
    assert card.embedding_dim == 12 and card.blend is None
    assert load_model_dir(outcome.model_dir).dim == 12


def test_a_finished_run_is_not_silently_overwritten(labelled, train_settings):
    train_model([labelled], train_settings, tiny_config(epochs=1), name="run")
    with pytest.raises(CheckpointError, match="already has a checkpoint.*--resume"):
        train_model([labelled], train_settings, tiny_config(epochs=1), name="run")
    # Resuming a finished run re-saves the same model (same weights, same version).
    again = train_model([labelled], train_settings, tiny_config(epochs=1), name="run",
                        resume=True)
    assert [e.name for e in list_models(train_settings)].count(again.card.version) == 1


def test_models_use_and_the_index_refuses_another_models_vectors(labelled, train_settings,
                                                                 tmp_path):
    first = train_model([labelled], train_settings, tiny_config(epochs=1, seed=1))
    second = train_model([labelled], train_settings, tiny_config(epochs=1, seed=2))
    assert first.card.version != second.card.version
    assert current_model_spec(train_settings) == PRETRAINED

    use_model(first.model_dir.name, train_settings)
    assert current_model_spec(train_settings) == first.model_dir.name
    listed = {entry.name: entry for entry in list_models(train_settings)}
    assert listed[first.model_dir.name].current and not listed[PRETRAINED].current
    assert listed[second.model_dir.name].card.metrics["test"]["queries"] == 30

    query = next(labelled.rglob("*.jpg"))
    with Lookalike.open(train_settings) as engine:
        engine.ingest(labelled)
        engine.embed()
        engine.build_index()
        assert engine.search(query, k=1)[0].score == pytest.approx(1.0, abs=1e-4)

    use_model(second.model_dir.name, train_settings)
    with Lookalike.open(train_settings) as engine:
        assert engine.model.version == second.card.version
        with pytest.raises(IndexLoadError, match="built for model .*rebuild the index"):
            engine.search(query, k=1)
        report = engine.embed()  # everything again, with the new model
        assert report.embedded == 60
        engine.build_index()
        assert engine.search(query, k=1)[0].score == pytest.approx(1.0, abs=1e-4)


def test_using_an_unknown_model_is_refused(train_settings):
    with pytest.raises(ModelNotFound, match="Available: pretrained"):
        use_model("no-such-model", train_settings)
    assert current_model_spec(train_settings) == PRETRAINED
    assert load_model(PRETRAINED, train_settings).card.version.startswith("tf_efficientnet_lite0")

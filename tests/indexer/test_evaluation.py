"""indexer.evaluation (``lookalike evaluate``): test classes, skipped photos, saved results."""

from __future__ import annotations

import json

import images_factory
import numpy as np
import pytest
from training_factory import write_tiny_model

from indexer.config import Settings
from indexer.evaluation import choose_test_classes, evaluate_folders
from indexer.model.evaluate import retrieval_metrics


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", precision="fp32", loader_workers=0, device="cpu")


def test_folder_evaluation_scores_the_test_half_and_lists_what_failed(tmp_path, settings):
    folder = images_factory.write_labelled_folder(tmp_path / "photos", classes=4, per_class=4)
    broken = folder / "class-03" / "broken.jpg"
    broken.write_bytes(images_factory.truncated_jpeg_bytes())
    model = write_tiny_model(tmp_path / "tiny")
    result = evaluate_folders([folder], settings, model=str(model))
    assert result.model_version == "tiny-test"
    assert result.test_classes == ["class-02", "class-03"]
    assert result.skipped == [(str(broken), "truncated image data")]
    assert result.vectors.shape == (8, 256) and sorted(set(result.labels)) == result.test_classes
    assert result.metrics == retrieval_metrics(result.vectors, result.labels)
    result.save(tmp_path / "eval.json")
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["skipped"] == [{"path": str(broken), "reason": "truncated image data"}]
    result.save_embeddings(tmp_path / "vectors.npz")
    assert np.load(tmp_path / "vectors.npz")["vectors"].shape == (8, 256)


def test_a_labelled_manifest_evaluates_like_its_folder(tmp_path, settings):
    folder = images_factory.write_labelled_folder(tmp_path / "photos", classes=4, per_class=3)
    manifest = tmp_path / "photos.csv"
    rows = [f"{p},{p.parent.name}" for p in sorted(folder.rglob("*.jpg"))]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    model = str(write_tiny_model(tmp_path / "tiny"))
    from_folder = evaluate_folders([folder], settings, model=model, all_classes=True)
    from_manifest = evaluate_folders([manifest], settings, model=model, all_classes=True)
    # The same images and labels, perhaps in another order (which k-means' NMI may feel).
    assert from_manifest.metrics.map_at_r == pytest.approx(from_folder.metrics.map_at_r)
    assert from_manifest.metrics.queries == from_folder.metrics.queries == 12
    assert from_folder.test_classes == [f"class-{i:02d}" for i in range(4)]


def test_test_classes_need_two():
    assert choose_test_classes({"a", "b", "c", "d"}, None, all_classes=False) == ["c", "d"]
    with pytest.raises(ValueError, match="at least two test classes; found 1"):
        choose_test_classes({"a", "b"}, None, all_classes=False)

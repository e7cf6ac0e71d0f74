"""Catalogue maps: real vectors of a tiny index, laid out, clustered, cached per version."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import images_factory
import numpy as np
import pytest
from PIL import Image
from training_factory import write_tiny_model

from indexer import maps
from indexer.config import Settings
from indexer.engine import Lookalike
from indexer.maps.layout import compute_layout, effective_perplexity, normalise


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def make_engine(home: Path, tiny_model: Path, **overrides) -> Lookalike:
    values = dict(home=home, model=str(tiny_model), device="cpu", precision="fp32",
                  loader_workers=0, database_url=None)
    values.update(overrides)
    return Lookalike.open(Settings(_env_file=None, **values))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model):
    """40 labelled photos (5 classes x 8) embedded by the tiny model and indexed."""
    root = tmp_path_factory.mktemp("maps")
    folder = images_factory.write_labelled_folder(root / "photos", classes=5, per_class=8)
    engine = make_engine(root / "home", tiny_model)
    engine.ingest(folder)
    engine.embed()
    engine.build_index(shards=2)
    yield engine
    engine.close()


def test_a_map_holds_every_sampled_item_of_the_version_in_the_unit_square(indexed):
    settings = indexed.settings
    version = indexed.indexes.current_version()
    data = maps.build_map(settings, indexed.catalog, max_points=30, clusters=4)
    assert data["index_version"] == version and data["model_version"] == "tiny-test"
    assert data["total"] == 40 and data["sampled"] == 30 == len(data["points"])
    assert data["clusters"] == 4 and {p["cluster"] for p in data["points"]} <= set(range(4))
    assert len({p["cluster"] for p in data["points"]}) > 1
    assert "openTSNE" in data["method"] and data["seconds"] > 0
    assert data["computed_at"].endswith("Z")
    xy = np.array([[p["x"], p["y"]] for p in data["points"]])
    assert xy.min() >= 0 and xy.max() <= 1 and np.ptp(xy, axis=0).max() == pytest.approx(1)
    items = {item.id: item for item in indexed.catalog.items_with_status("indexed")}
    for point in data["points"]:
        item = items[point["item_id"]]  # every point is a real indexed item
        assert (point["label"], point["product_id"], point["title"]) == (
            item.label, item.product_id, item.title)
    # the sample's vectors are those of the vector store (ids of the version's shards)
    ids = maps.version_ids(indexed.indexes.load(version))
    stored, _ = indexed.vectors.load()
    assert np.array_equal(ids, stored)


def test_same_seed_same_map_other_seed_other_sample(indexed):
    settings, catalog = indexed.settings, indexed.catalog
    first = maps.build_map(settings, catalog, max_points=25, seed=3)
    again = maps.build_map(settings, catalog, max_points=25, seed=3)
    other = maps.build_map(settings, catalog, max_points=25, seed=4)
    assert [(p["item_id"], p["x"], p["y"], p["cluster"]) for p in first["points"]] == [
        (p["item_id"], p["x"], p["y"], p["cluster"]) for p in again["points"]]
    assert {p["item_id"] for p in first["points"]} != {p["item_id"] for p in other["points"]}


def test_neighbours_in_the_map_share_their_class(indexed):
    """The layout means something: the nearest point is mostly of the same class."""
    data = maps.build_map(indexed.settings, indexed.catalog)
    xy = np.array([[p["x"], p["y"]] for p in data["points"]])
    labels = [p["label"] for p in data["points"]]
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 9
    nearest = distances.argmin(axis=1)
    agreement = np.mean([labels[i] == labels[j] for i, j in enumerate(nearest)])
    assert agreement >= 0.6, agreement  # 5 classes: chance is 0.2


def test_auto_clusters_grow_with_the_sample():
    assert [maps.auto_clusters(n) for n in (0, 1, 2, 8, 50, 5000, 10**6)] == [
        0, 1, 1, 2, 5, 50, 50]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7])
def test_tiny_samples_are_laid_out_without_error(n):
    rng = np.random.default_rng(n)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    layout = compute_layout(vectors, perplexity=30, clusters=0)
    assert layout.xy.shape == (n, 2) and layout.clusters.shape == (n,)
    assert ((layout.xy >= 0) & (layout.xy <= 1)).all()
    assert layout.k == (0 if n == 0 else maps.auto_clusters(n))
    if n >= 3:
        assert "perplexity" in layout.method
        assert 3 * effective_perplexity(30, n) < n - 1


def test_more_clusters_than_points_is_capped_and_bad_options_are_refused():
    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    assert compute_layout(vectors, clusters=50).k == 5
    with pytest.raises(ValueError, match="clusters"):
        compute_layout(vectors, clusters=-1)
    with pytest.raises(ValueError, match="perplexity"):
        compute_layout(vectors, perplexity=0)
    with pytest.raises(ValueError, match="max_points"):
        maps.sample_ids(np.arange(5), 0, seed=0)


def test_normalise_keeps_the_aspect_ratio():
    xy = normalise(np.array([[0, 0], [4, 1], [2, 0.5]]))
    assert xy[:, 0].tolist() == [0, 1, 0.5]
    assert xy[:, 1].max() - xy[:, 1].min() == pytest.approx(0.25)
    assert normalise(np.ones((3, 2))).tolist() == [[0.5, 0.5]] * 3


def test_a_map_of_one_item(tmp_path, tiny_model):
    folder = images_factory.write_labelled_folder(tmp_path / "photos", classes=1, per_class=1)
    with make_engine(tmp_path / "home", tiny_model) as engine:
        engine.ingest(folder)
        engine.embed()
        engine.build_index()
        data, computed = maps.ensure_map(engine.settings, engine.catalog)
    assert computed and data["sampled"] == 1 and data["clusters"] == 1
    assert (data["points"][0]["x"], data["points"][0]["y"]) == (0.5, 0.5)


def test_maps_are_cached_per_version_and_older_ones_pruned(tmp_path, tiny_model):
    folder = images_factory.write_labelled_folder(tmp_path / "photos", classes=2, per_class=3)
    with make_engine(tmp_path / "home", tiny_model, index_keep_versions=2) as engine:
        engine.ingest(folder)
        engine.embed()
        settings = engine.settings
        versions = []
        for _ in range(3):
            versions.append(engine.build_index())
            data, computed = maps.ensure_map(settings, engine.catalog)
            assert computed and data["index_version"] == versions[-1]
        again, computed = maps.ensure_map(settings, engine.catalog)
        assert not computed and again == data  # the second run only reads the cache
        assert maps.cached_versions(settings) == versions[1:]  # the oldest was pruned
        assert maps.load_map(settings, versions[0]) is None
        assert maps.latest_map(settings, besides=versions[2])["index_version"] == versions[1]
        leftovers = [p.name for p in maps.maps_dir(settings).iterdir()]
        assert sorted(leftovers) == [f"{v}.json" for v in versions[1:]]  # no temp files


def test_a_half_written_cache_file_is_ignored_and_recomputed(indexed, tmp_path, caplog):
    settings = indexed.settings.model_copy(update={"home": tmp_path / "copy"})
    # the same index and catalog seen from a second home: copy the cached map only
    version = indexed.indexes.current_version()
    whole = maps.build_map(indexed.settings, indexed.catalog, max_points=10)
    path = maps.map_path(settings, version)
    path.parent.mkdir(parents=True)
    text = json.dumps(whole)
    path.write_text(text[: len(text) // 2])  # a crash of a non-atomic copy
    assert maps.load_map(settings, version) is None
    assert "ignoring unreadable map" in caplog.text
    # whole JSON but fewer points than its header says: also not a map
    cut = dict(whole, points=whole["points"][:-1])
    path.write_text(json.dumps(cut))
    assert maps.load_map(settings, version) is None
    assert "10 points" not in caplog.text and "9 points, the header says 10" in caplog.text
    # ensure_map recomputes over it (in the real home, whose index it is)
    real = maps.map_path(indexed.settings, version)
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_text(text[: len(text) // 3])
    data, computed = maps.ensure_map(indexed.settings, indexed.catalog)
    assert computed and maps.load_map(indexed.settings, version) == data


def test_the_queue_marker_lets_one_request_through_per_interval(tmp_path):
    settings = Settings(home=tmp_path, map_requeue_after=600, _env_file=None)
    version = "20261127T140501.123456Z-9f3a"
    now = time.time()
    assert maps.claim_queue_slot(settings, version, now=now)
    assert not maps.claim_queue_slot(settings, version, now=now + 1)
    marker = maps.map_path(settings, version).with_suffix(".queued")
    os.utime(marker, (now - 601, now - 601))  # the worker never finished
    assert maps.claim_queue_slot(settings, version, now=now)
    maps.release_queue_slot(settings, version)  # the broker was down: forget the claim
    assert maps.claim_queue_slot(settings, version, now=now + 2)


def test_the_png_is_an_image_with_a_colour_per_class(indexed, tmp_path):
    data = maps.build_map(indexed.settings, indexed.catalog)
    path = maps.render_png(data, tmp_path / "out" / "map.png", size=400)
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == (400, 400)
        colours = {c for _, c in image.getcolors(400 * 400)}
    for colour in maps.png.palette(5):  # 5 labels: the first 5 palette colours appear
        assert colour in colours
    assert (255, 255, 255) in colours
    by_cluster = maps.render_png(data, tmp_path / "c.png", size=200, color_by="cluster")
    assert by_cluster.stat().st_size > 0
    with pytest.raises(ValueError, match="color_by"):
        maps.render_png(data, tmp_path / "x.png", color_by="shape")


def test_palette_colours_are_distinct():
    colours = maps.png.palette(60)
    assert len(set(colours)) == 60

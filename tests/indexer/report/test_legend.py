"""indexer.report.legend and the map's names: each class's name at its photos' mean position."""

import numpy as np
import pytest
from PIL import Image

from indexer.maps.png import plot_area
from indexer.report.figures import class_colours, darker, render_class_map
from indexer.report.legend import class_centres, place_labels


def test_each_class_centre_is_the_mean_position_of_its_photos():
    xy = np.array([[0.1, 0.2], [0.3, 0.4], [0.9, 0.9], [0.7, 0.5], [0.2, 0.0]])
    labels = np.array(["b", "b", "a", "a", "b"])
    centres = {c.name: c for c in class_centres(xy, labels)}
    assert (centres["b"].x, centres["b"].y) == pytest.approx((0.2, 0.2))
    assert (centres["a"].x, centres["a"].y) == pytest.approx((0.8, 0.7))
    assert centres["a"].size == 2 and centres["b"].size == 3
    with pytest.raises(ValueError, match="5 map positions but 2 labels"):
        class_centres(xy, labels[:2])


def test_names_sit_on_their_anchors_unless_they_would_overlap():
    bounds = (0, 0, 500, 500)
    anchors = [(100, 100), (300, 300), (100, 100)]
    sizes = [(80, 20), (80, 20), (60, 20)]
    placed = place_labels(anchors, sizes, bounds)
    assert placed[:2] == [(100, 100), (300, 300)]
    assert placed[2] == (100, 80)  # one line up, clear of the first
    # Near an edge a name is pulled inside the picture.
    assert place_labels([(5, 495)], [(80, 20)], bounds) == [(40, 490)]


def well_apart(n_classes: int, per_class: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0.1, 0.9, size=(n_classes, 2))
    labels = np.repeat([f"class {i}" for i in range(n_classes)], per_class)
    xy = np.repeat(corners, per_class, axis=0) + rng.normal(scale=0.01, size=(len(labels), 2))
    return np.clip(xy, 0, 1), labels


def test_the_map_writes_each_name_at_its_class_centre(tmp_path):
    xy, labels = np.array([[0.1, 0.1], [0.15, 0.1], [0.9, 0.8], [0.85, 0.9]]), np.array(
        ["Oat & <milk>", "Oat & <milk>", "Leek", "Leek"])
    placed = render_class_map(xy, labels, tmp_path / "map.png", title="t", size=400)
    by_name = {p.name: p for p in placed}
    assert set(by_name) == {"Oat & <milk>", "Leek"}
    image = Image.open(tmp_path / "map.png").convert("RGB")
    for name, centre in (("Oat & <milk>", (0.125, 0.1)), ("Leek", (0.875, 0.85))):
        assert by_name[name].centre == pytest.approx(plot_area(400).pixel(*centre))
        assert by_name[name].at == pytest.approx(by_name[name].centre, abs=30)  # edges pull in
    # The names are written there, in their class's colour darkened (which no dot has:
    # a dot's anti-aliased edge only mixes its colour with white).
    pixels = np.asarray(image).astype(int)
    colours = class_colours(list(labels))
    for name in by_name.values():
        x, y = (round(v) for v in name.at)
        patch = pixels[y - 6 : y + 6, x - 12 : x + 12]
        text = np.array(darker(colours[name.name]))
        assert (np.abs(patch - text).max(axis=2) <= 8).sum() >= 5, name.name


def test_a_few_classes_get_a_colour_key_many_do_not(tmp_path):
    xy, labels = well_apart(4)
    render_class_map(xy, labels, tmp_path / "few.png", title="t", size=300)
    assert Image.open(tmp_path / "few.png").size == (300 + round(300 * 0.28), 300)
    xy, labels = well_apart(25, per_class=3)
    placed = render_class_map(xy, labels, tmp_path / "many.png", title="t", size=300)
    assert Image.open(tmp_path / "many.png").size == (300, 300)
    assert len(placed) == 25

"""The side-by-side picture: both photos, each map drawn over its crop box only."""

import numpy as np
from PIL import Image

from indexer.explain import Explanation
from indexer.explain.render import PANEL_HEIGHT, colourise, overlay, side_by_side


def explanation(query_map, result_map, box=(20.0, 20.0, 300.0, 300.0)):
    return Explanation(score=0.5, query_heatmap=query_map, result_heatmap=result_map,
                       query_size=(320, 320), result_size=(320, 160), query_box=box,
                       result_box=(40.0, 0.0, 280.0, 160.0), method="decomposition")


def test_overlay_colours_the_hot_cells_inside_the_box_only():
    photo = Image.new("RGB", (320, 320), (128, 128, 128))
    heatmap = np.zeros((7, 7), dtype=np.float32)
    heatmap[3, 3] = 1.0
    heatmap[0, 6] = -1.0  # lowers the score: not drawn
    drawn = np.asarray(overlay(photo, heatmap, (20.0, 20.0, 300.0, 300.0))).astype(int)
    assert (drawn[5, 5] == 128).all() and (drawn[315, 315] == 128).all()  # outside the box
    hot, cold = drawn[160, 160].sum(), drawn[40, 280].sum()  # the negative cell: dark
    assert hot > 3 * 128 > cold
    nothing = overlay(photo, np.zeros((7, 7), dtype=np.float32), (20.0, 20.0, 300.0, 300.0))
    assert (np.asarray(nothing) == 128).all()  # no cell adds to the score: nothing drawn


def test_side_by_side_puts_both_panels_at_one_height():
    maps = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    picture = side_by_side(explanation(maps, maps), Image.new("RGB", (320, 320)),
                           Image.new("RGB", (320, 160)))
    assert picture.height > PANEL_HEIGHT
    assert picture.width > PANEL_HEIGHT + 2 * PANEL_HEIGHT  # 1:1 and 2:1 panels


def test_the_ramp_runs_dark_to_bright():
    colours = colourise(np.linspace(0, 1, 5)[None]).astype(int)[0]
    assert colours.sum(axis=1).tolist() == sorted(colours.sum(axis=1).tolist())
    assert colours[0].tolist() == [0, 0, 4] and colours[-1].tolist() == [252, 255, 164]

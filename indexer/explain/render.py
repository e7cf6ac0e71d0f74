"""A picture of an explanation: query and result side by side, each with its map.

Each map is drawn over the part of the photo it covers (the model's crop box), scaled
to its own largest positive cell; cells that add nothing or lower the score get the
ramp's dark end, lightly. Pillow only: the colour ramp is our own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from indexer.explain.explanation import Box, Explanation

PANEL_HEIGHT = 320
GAP = 12
HEADER = 28
# A dark-to-bright ramp (black, purple, red, orange, yellow), perceptually ordered.
_RAMP = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)],
                 dtype=np.float32)


def colourise(values: np.ndarray) -> np.ndarray:
    """(h, w) values in [0, 1] → (h, w, 3) uint8 colours of the ramp."""
    position = np.clip(values, 0, 1) * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    frac = (position - low)[..., None]
    return (_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).round().astype(np.uint8)


def overlay(photo: Image.Image, heatmap: np.ndarray, box: Box) -> Image.Image:
    """``photo`` with ``heatmap`` blended over ``box`` (photo pixels)."""
    photo = photo.convert("RGB")
    positive = np.clip(np.asarray(heatmap, dtype=np.float32), 0, None)
    peak = float(positive.max())
    if peak <= 0:
        return photo
    scaled = positive / peak
    x0, y0, x1, y1 = box
    size = (max(1, round(x1 - x0)), max(1, round(y1 - y0)))
    smooth = np.asarray(Image.fromarray(scaled).resize(size, Image.Resampling.BILINEAR))
    colours = Image.fromarray(colourise(smooth))
    # Cold cells darken the photo a little, hot ones take the ramp's bright end: the
    # contrast reads on any photo.
    alpha = Image.fromarray((64 + np.clip(smooth, 0, 1) * 150).astype(np.uint8))
    layer = Image.new("RGB", photo.size)
    mask = Image.new("L", photo.size, 0)
    layer.paste(colours, (round(x0), round(y0)))
    mask.paste(alpha, (round(x0), round(y0)))
    out = Image.composite(layer, photo, mask)
    ImageDraw.Draw(out).rectangle((x0, y0, x1 - 1, y1 - 1), outline=(255, 255, 255))
    return out


def side_by_side(explanation: Explanation, query: Image.Image, result: Image.Image) -> Image.Image:
    """One image: the query and the result, each with its overlay, and the score above."""
    panels = []
    for photo, heatmap, box in (
        (query, explanation.query_heatmap, explanation.query_box),
        (result, explanation.result_heatmap, explanation.result_box),
    ):
        drawn = overlay(photo, heatmap, box)
        width = max(1, round(drawn.width * PANEL_HEIGHT / drawn.height))
        panels.append(drawn.resize((width, PANEL_HEIGHT), Image.Resampling.LANCZOS))
    canvas = Image.new("RGB", (sum(p.width for p in panels) + 3 * GAP,
                               PANEL_HEIGHT + HEADER + GAP), (255, 255, 255))
    left = GAP
    for panel in panels:
        canvas.paste(panel, (left, HEADER))
        left += panel.width + GAP
    ImageDraw.Draw(canvas).text(
        (GAP, 8), f"score {explanation.score:.4f} ({explanation.method})   query | result",
        fill=(0, 0, 0),
    )
    return canvas


def save_png(explanation: Explanation, query: Image.Image, result: Image.Image,
             path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(explanation, query, result).save(path, format="PNG")
    return path

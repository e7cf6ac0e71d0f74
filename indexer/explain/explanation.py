"""What an explanation is: a score, a map on each image, and where each map lies.

A map covers the model's input, the centre crop of the photo (``*_box``, in the
photo's own pixels, upright); its cells tile that box in equal rows and columns, so a
client overlays cell ``(row, col)`` on :func:`cell_boxes`' box for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECOMPOSITION = "decomposition"
OCCLUSION = "occlusion"
METHODS = (DECOMPOSITION, OCCLUSION)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels


def check_method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return str(method)


def cell_boxes(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols, 4): the photo-pixel box (x0, y0, x1, y1) of each map cell."""
    rows, cols = shape
    x0, y0, x1, y1 = box
    xs = np.linspace(x0, x1, cols + 1)
    ys = np.linspace(y0, y1, rows + 1)
    out = np.empty((rows, cols, 4), dtype=np.float64)
    out[..., 0], out[..., 2] = xs[None, :-1], xs[None, 1:]
    out[..., 1], out[..., 3] = ys[:-1, None], ys[1:, None]
    return out


@dataclass(frozen=True)
class Explanation:
    """Where the similarity of a query and a result comes from.

    ``score``: the cosine of the two images' vectors, computed by PyTorch in float32 on
    the CPU; for ``decomposition`` each map sums to it. With fp32 vectors (any runtime
    at ``LOOKALIKE_PRECISION=fp32``) it is the score ``search`` reports for the pair, to
    ~1e-6; bf16 vectors put the search's scores some hundredths off (OpenVINO bf16 on an
    AMD EPYC: 0.011 on average and 0.024 at most over 12 sample pairs, 0.08 at most on
    another 9). ``search_score`` is the search's own: the query's vector from the
    engine's runtime times the result's stored vector (None while the result has no
    vector); an index that holds projected vectors (``LOOKALIKE_INDEX_DIM``) ranks by
    their cosine instead, which the search's results report. For ``occlusion`` a cell
    is the drop in the score with that patch hidden.
    Sizes are ``(width, height)`` of the upright photos.
    """

    score: float
    query_heatmap: np.ndarray  # (rows, cols) float32
    result_heatmap: np.ndarray
    query_size: tuple[int, int]
    result_size: tuple[int, int]
    query_box: Box
    result_box: Box
    method: str
    model_version: str | None = None
    result_item_id: str | None = None
    search_score: float | None = None

    def cells(self, which: str) -> np.ndarray:
        """:func:`cell_boxes` of the ``"query"`` or ``"result"`` map."""
        heatmap, box = ((self.query_heatmap, self.query_box) if which == "query"
                        else (self.result_heatmap, self.result_box))
        return cell_boxes(box, heatmap.shape)

    def as_dict(self) -> dict:
        def frame(size: tuple[int, int], box: Box) -> dict:
            return {"width": int(size[0]), "height": int(size[1]),
                    "box": [round(float(v), 3) for v in box]}

        def grid(heatmap: np.ndarray) -> list[list[float]]:
            return [[round(float(v), 7) for v in row] for row in heatmap]

        return {
            "score": round(float(self.score), 6),
            "search_score": (None if self.search_score is None
                             else round(float(self.search_score), 6)),
            "method": self.method,
            "query_heatmap": grid(self.query_heatmap),
            "result_heatmap": grid(self.result_heatmap),
            "query_image": frame(self.query_size, self.query_box),
            "result_image": frame(self.result_size, self.result_box),
            "model_version": self.model_version,
            "result_item_id": self.result_item_id,
        }

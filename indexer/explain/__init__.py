"""Explain the match: where in each of two photos their similarity comes from.

Two methods, both at the backbone's feature-map resolution (7 x 7 for a 224-px input):

* ``decomposition`` (the default): the cosine as an exact sum over pairs of feature
  cells, summed per cell of each image (:mod:`.decompose`); two forward passes.
* ``occlusion``: the drop in the cosine with one patch of an image hidden
  (:mod:`.occlusion`); a forward pass per patch, the check on the first.

``Lookalike.explain(query, result_item_id)`` is the entry point; :mod:`.render` draws
the pair with both overlays.
"""

from indexer.explain.decompose import (
    FeatureMaps,
    NotDecomposable,
    cell_shares,
    decompose,
    feature_maps,
)
from indexer.explain.explainer import Explainer, Shown
from indexer.explain.explanation import (
    DECOMPOSITION,
    METHODS,
    OCCLUSION,
    Explanation,
    cell_boxes,
    check_method,
)
from indexer.explain.occlusion import occlusion_map
from indexer.search import UnknownItem


class UnknownResultItem(UnknownItem):
    """The result item of an explanation is not catalogued, deleted, or has no image."""


__all__ = [
    "DECOMPOSITION", "METHODS", "OCCLUSION", "Explainer", "Explanation", "NotDecomposable",
    "Shown", "UnknownResultItem", "cell_boxes", "cell_shares", "check_method", "decompose",
    "FeatureMaps", "feature_maps",
    "occlusion_map",
]  # fmt: skip

"""Both images in, an :class:`Explanation` out: pixels as the engine makes them, the
model in float32 on the CPU, one of the two methods.

The pixels are the embedder's own: a query photo through its preprocessor (as a search
by photo), a stored original through the decoder that embedded it
(:meth:`~indexer.model.embed.Embedder.file_pixels`), so the score is the cosine of the
vectors the engine searches with, not of a near copy of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from indexer.catalog import Item
from indexer.explain.decompose import cell_shares, decompose
from indexer.explain.explanation import DECOMPOSITION, Explanation, check_method
from indexer.explain.occlusion import DEFAULT_PATCH, DEFAULT_STRIDE, occlusion_map
from indexer.images import load_image
from indexer.model.embed import Embedder
from indexer.model.preprocess import PixelNormalizer

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Shown:
    """One side of a pair: the model's input pixels and the photo they were cut from."""

    pixels: torch.Tensor  # uint8 (H, W, 3), the model input
    size: tuple[int, int]  # (width, height) of the upright photo


class Explainer:
    """Explains pairs for one embedder's model; thread-safe (inference only).

    The model runs in float32 on the CPU whatever the embedder's device and precision
    (a copy when the embedder moved it to a GPU): the maps must add up to the cosine.
    """

    def __init__(self, embedder: Embedder, *, patch: int = DEFAULT_PATCH,
                 stride: int = DEFAULT_STRIDE) -> None:
        self.embedder = embedder
        model = embedder.model
        on_cpu = all(p.device == CPU for p in model.parameters())
        self.model = (model if on_cpu else copy.deepcopy(model).to(CPU)).eval()
        self.normalize = PixelNormalizer(model.data_config, CPU)
        self.patch, self.stride = patch, stride

    def image(self, image: Image.Image) -> Shown:
        """A decoded query photo, preprocessed as a search by photo does it."""
        return Shown(self.embedder.preprocessor.from_image(image), image.size)

    def stored(self, item: Item, home: Path) -> Shown:
        """A catalogued item's stored original, decoded as embedding decoded it."""
        path = Path(home) / item.stored_path
        pixels = self.embedder.file_pixels(path)
        if item.width and item.height:
            size = (int(item.width), int(item.height))
        else:  # an older catalog row without a size: the upright decoded size
            size = load_image(path, max_pixels=self.embedder.preprocessor.max_pixels).image.size
        return Shown(pixels, size)

    def explain(self, query: Shown, result: Shown, method: str = DECOMPOSITION, *,
                model_version: str | None = None, result_item_id: str | None = None,
                search_score: float | None = None) -> Explanation:
        method = check_method(method)
        x = self.normalize(torch.stack([query.pixels, result.pixels]).to(CPU))
        if method == DECOMPOSITION:
            shares = cell_shares(self.model, x)
            score, query_map, result_map = decompose(shares[0], shares[1])
        else:
            with torch.inference_mode():
                vectors = self.model(x).float()
            score, query_map = occlusion_map(self.model, x[0], vectors[1], patch=self.patch,
                                             stride=self.stride)
            _, result_map = occlusion_map(self.model, x[1], vectors[0], patch=self.patch,
                                          stride=self.stride)
        crop = self.embedder.preprocessor.crop_box
        return Explanation(
            score=score,
            query_heatmap=query_map.cpu().numpy().astype("float32"),
            result_heatmap=result_map.cpu().numpy().astype("float32"),
            query_size=query.size, result_size=result.size,
            query_box=crop(*query.size), result_box=crop(*result.size),
            method=method, model_version=model_version, result_item_id=result_item_id,
            search_score=search_score,
        )

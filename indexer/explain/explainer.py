"""Both images in, an :class:`Explanation` out: pixels as the engine makes them, the
model on the CPU at the search's precision there, one of the two methods.

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
from indexer.model.device import autocast_context
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

    The model runs on the CPU (a copy when the embedder moved it to a GPU), channels_last,
    its feature maps at the embedder's precision there: bf16 where the search runs bf16
    on this CPU (2.8x faster than fp32 here, and nearer the search's own scores), else
    fp32. Cells and sums are float32, so the maps add up to the cosine of the vectors
    computed so: exactly the search's score when it runs in fp32.
    """

    def __init__(self, embedder: Embedder, *, patch: int = DEFAULT_PATCH,
                 stride: int = DEFAULT_STRIDE) -> None:
        self.embedder = embedder
        model = embedder.model
        on_cpu = all(p.device == CPU for p in model.parameters())
        model = model if on_cpu else copy.deepcopy(model).to(CPU)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.precision = embedder.precision if embedder.device.type == "cpu" else "fp32"
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
        x = x.contiguous(memory_format=torch.channels_last)
        if method == DECOMPOSITION:
            shares = cell_shares(self.model, x, self.precision)
            score, query_map, result_map = decompose(shares[0], shares[1])
        else:
            with torch.inference_mode(), autocast_context(self.precision, CPU):
                vectors = self.model(x).float()
            options = {"patch": self.patch, "stride": self.stride, "precision": self.precision}
            score, query_map = occlusion_map(self.model, x[0], vectors[1], **options)
            _, result_map = occlusion_map(self.model, x[1], vectors[0], **options)
        crop = self.embedder.preprocessor.crop_box
        return Explanation(
            score=score,
            query_heatmap=query_map.float().cpu().numpy(),
            result_heatmap=result_map.float().cpu().numpy(),
            query_size=query.size, result_size=result.size,
            query_box=crop(*query.size), result_box=crop(*result.size),
            method=method, model_version=model_version, result_item_id=result_item_id,
            search_score=search_score,
        )

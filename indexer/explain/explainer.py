"""Both images in, an :class:`Explanation` out: pixels as the engine makes them, the
model on the CPU at the search's precision there, one of the two methods.

The pixels are the embedder's own: a query photo through its preprocessor (as a search
by photo), a stored original through the decoder that embedded it
(:meth:`~indexer.model.embed.Embedder.file_pixels`), so the score is the cosine of the
vectors the engine searches with, not of a near copy of them.
"""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from indexer.catalog import Item
from indexer.explain.decompose import (
    FeatureMaps,
    NotDecomposable,
    cell_shares,
    decompose,
    feature_maps,
)
from indexer.explain.explanation import DECOMPOSITION, Explanation, check_method
from indexer.explain.occlusion import DEFAULT_PATCH, DEFAULT_STRIDE, occlusion_map
from indexer.images import load_image
from indexer.model.device import autocast_context
from indexer.model.embed import Embedder
from indexer.model.export import (
    ExportedGraph,
    GraphRefused,
    PixelFunction,
    ensure_graph,
    reference_photos,
)
from indexer.model.modeldir import graph_directory, graph_identity
from indexer.model.preprocess import PixelNormalizer
from indexer.model.runtime import GRAPH_RUNTIMES, Runtime, RuntimeUnavailable, open_runtime

log = logging.getLogger(__name__)
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Shown:
    """One side of a pair: the model's input pixels and the photo they were cut from."""

    pixels: torch.Tensor  # uint8 (H, W, 3), the model input
    size: tuple[int, int]  # (width, height) of the upright photo


class Explainer:
    """Explains pairs for one embedder's model; thread-safe (inference only).

    The feature maps (:class:`~indexer.explain.decompose.FeatureMaps`) come from the
    search's runtime where it runs an exported graph (OpenVINO or ONNX Runtime on the
    CPU): a second graph of the same model, exported, cached and checked against PyTorch
    like the embedding's; else from PyTorch on the CPU (a copy when the embedder moved
    the model to a GPU), channels_last. Either way at the embedder's precision on the
    CPU (bf16 where the search runs bf16 here, else fp32); cells and sums are float32,
    so the maps add up to the cosine of the vectors computed so: the search's score
    when it runs in fp32. Occlusion runs in PyTorch.
    """

    def __init__(self, embedder: Embedder, *, patch: int = DEFAULT_PATCH,
                 stride: int = DEFAULT_STRIDE) -> None:
        self.embedder = embedder
        model = embedder.model
        on_cpu = all(p.device == CPU for p in model.parameters())
        model = model if on_cpu else copy.deepcopy(model).to(CPU)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.precision = embedder.precision if embedder.device.type == "cpu" else "fp32"
        self._maps_runtime: Runtime | None = None
        self._maps_lock = threading.Lock()
        self._maps_tried = False
        self.normalize = PixelNormalizer(model.data_config, CPU)
        self.patch, self.stride = patch, stride

    def maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """:class:`FeatureMaps` of uint8 (n, H, W, 3) model-input pixels."""
        runtime = self._runtime()
        if runtime is not None:
            return torch.from_numpy(runtime.run(pixels.numpy()))
        x = self.normalize(pixels.to(CPU)).contiguous(memory_format=torch.channels_last)
        return feature_maps(self.model, x, self.precision)

    def _runtime(self) -> Runtime | None:
        """The feature-map graph on the search's runtime, opened once (None: PyTorch)."""
        if self._maps_tried:
            return self._maps_runtime
        with self._maps_lock:
            if not self._maps_tried:
                self._maps_runtime = self._open_runtime()
                self._maps_tried = True
        return self._maps_runtime

    def _open_runtime(self) -> Runtime | None:
        embedder, model = self.embedder, self.model
        name = embedder.runtime.name
        if name not in GRAPH_RUNTIMES or embedder.device.type != "cpu":
            return None
        function = PixelFunction(FeatureMaps(model), model.data_config)

        def graph() -> ExportedGraph:
            return ensure_graph(
                function, name="feature-maps",
                directory=graph_directory(model, embedder.cache_dir),
                identity={**graph_identity(model), "graph": "feature-maps"},
                check_pixels=reference_photos(embedder.preprocessor.from_image),
            )

        try:
            return open_runtime(name, torch_function=lambda: function, graph=graph,
                                device=CPU, precision=self.precision)
        except (RuntimeUnavailable, GraphRefused, NotDecomposable, OSError) as exc:
            log.warning("explanations run in PyTorch: the feature-map graph on %s: %s",
                        name, exc)
            return None

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
        pixels = torch.stack([query.pixels, result.pixels])
        if method == DECOMPOSITION:
            shares = cell_shares(self.model, self.maps(pixels))
            score, query_map, result_map = decompose(shares[0], shares[1])
        else:
            x = self.normalize(pixels.to(CPU)).contiguous(memory_format=torch.channels_last)
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

"""ONNX graphs of exactly the functions whose outputs we keep, cached and checked before use.

A graph takes what the loaders hand over, uint8 NHWC pixels, and returns what the
index (or the training cache) stores: the normalisation to the model's mean and std,
the backbone, head, blend with the pretrained half and L2 normalisation are all inside
it (:class:`PixelFunction`). Any batch size; the image size is the model's.

Each graph lives in a cache directory beside what it was made from (a trained model's
own directory; the runtime cache for the pretrained weights; the run directory for a
training trunk) as three files:

* ``NAME.onnx``: the graph;
* ``NAME.reference.npz``: a few real photos (scikit-learn's bundled samples and crops
  of them, preprocessed as the embedder would) and PyTorch's outputs for them;
* ``NAME.json``, written last: what the graph was made for (model version, weights
  checksum, input size, ...), the sha256 of both other files, the exporter's versions.

:func:`ensure_graph` uses the cached graph only when the manifest names the same
identity and both checksums match; anything else (missing, tampered with, made for
another model version) is refused with the reason logged, and exported anew. A runtime
then checks its own outputs for the reference photos against PyTorch's
(:func:`check_outputs`) before it embeds anything: a graph never silently yields other
vectors.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from indexer.fsutil import atomic_write_bytes, atomic_write_text, sha256_file
from indexer.locks import writer_flock

log = logging.getLogger(__name__)

FORMAT = 1
OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "outputs"
# fp32 runtimes agree with PyTorch to ~1e-7; below this a graph is not the same function.
GRAPH_MIN_COSINE = 0.9999


class GraphRefused(RuntimeError):
    """A graph (or a runtime's outputs for it) that cannot stand in for PyTorch; why."""


class PixelFunction(nn.Module):
    """uint8 (n, H, W, 3) pixels → ``function(normalised NCHW float)``, as one module."""

    def __init__(self, function: nn.Module, data_config: Mapping[str, Any]) -> None:
        super().__init__()
        self.function = function
        mean = torch.tensor(data_config["mean"], dtype=torch.float32) * 255.0
        std = torch.tensor(data_config["std"], dtype=torch.float32) * 255.0
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("inv_std", (1.0 / std).view(1, -1, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float()
        return self.function((x - self.mean) * self.inv_std).float()


@dataclass(frozen=True)
class ExportedGraph:
    """A checked graph file, and the reference photos with PyTorch's outputs for them."""

    path: Path
    manifest: dict[str, Any]
    check_pixels: np.ndarray  # uint8 (n, H, W, 3)
    reference: np.ndarray  # float32 (n, ...): PyTorch's outputs for check_pixels

    @property
    def sha256(self) -> str:
        return self.manifest["graph_sha256"]


def reference_photos(preprocess: Callable[[Any], torch.Tensor]) -> np.ndarray:
    """A few real photos as the model sees them: uint8 (4, H, W, 3).

    scikit-learn's two bundled photos (a palace, a flower) and a crop of each: real
    textures and colours, shipped with a dependency, so no download and no data file.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photos = [Image.fromarray(np.asarray(load_sample_image(f"{name}.jpg")))
              for name in ("china", "flower")]
    crops = [photo.crop((photo.width // 4, photo.height // 5, photo.width * 3 // 4,
                         photo.height * 4 // 5)) for photo in photos]
    return np.stack([np.asarray(preprocess(image)) for image in [*photos, *crops]])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two output arrays (feature maps are flattened)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def check_outputs(outputs: np.ndarray, graph: ExportedGraph, min_cosine: float,
                  what: str) -> float:
    """The lowest cosine of ``outputs`` to PyTorch's reference; :class:`GraphRefused` below
    ``min_cosine`` (or on a shape mismatch)."""
    if outputs.shape != graph.reference.shape:
        raise GraphRefused(f"{what}: output shape {outputs.shape} is not PyTorch's "
                           f"{graph.reference.shape}")
    lowest = float(cosines(outputs, graph.reference).min())
    if not lowest >= min_cosine:  # also refuses NaN
        raise GraphRefused(f"{what}: cosine to PyTorch {lowest:.6f} on the reference photos, "
                           f"below {min_cosine}")
    return lowest


def ensure_graph(function: PixelFunction, *, name: str, directory: Path,
                 identity: Mapping[str, Any], check_pixels: np.ndarray) -> ExportedGraph:
    """The cached graph of ``function`` for ``identity``, exported (again) if need be.

    Processes sharing the directory take turns (an ``flock``), so a graph is exported
    once; files are written atomically, the manifest last.
    """
    directory = Path(directory)
    identity = json.loads(json.dumps(dict(identity)))  # as it will read back from JSON
    with writer_flock(directory / f".{name}.lock"):
        try:
            return _cached(directory, name, identity)
        except GraphRefused as refused:
            log.info("exporting %s to ONNX: %s", name, refused)
        return _export(function, directory, name, identity, check_pixels)


def _paths(directory: Path, name: str) -> tuple[Path, Path, Path]:
    return (directory / f"{name}.onnx", directory / f"{name}.reference.npz",
            directory / f"{name}.json")


def _cached(directory: Path, name: str, identity: Mapping[str, Any]) -> ExportedGraph:
    graph_path, reference_path, manifest_path = _paths(directory, name)
    if not manifest_path.is_file():
        raise GraphRefused(f"no cached graph in {directory}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GraphRefused(f"unreadable manifest {manifest_path.name}: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise GraphRefused(f"manifest format {manifest.get('format')!r}, not {FORMAT}")
    made_for = manifest.get("identity", {})
    differences = [f"{key} {made_for.get(key)!r} (now {value!r})"
                   for key, value in identity.items() if made_for.get(key) != value]
    if differences:
        raise GraphRefused("cached graph was made for another model: " + ", ".join(differences))
    for path, key in ((graph_path, "graph_sha256"), (reference_path, "reference_sha256")):
        if not path.is_file():
            raise GraphRefused(f"{path.name} is missing")
        if sha256_file(path) != manifest.get(key):
            raise GraphRefused(f"{path.name} does not match its checksum (changed since export)")
    with np.load(reference_path) as saved:
        pixels, reference = saved["pixels"], saved["reference"]
    return ExportedGraph(graph_path, manifest, pixels, reference)


def _export(function: PixelFunction, directory: Path, name: str,
            identity: Mapping[str, Any], check_pixels: np.ndarray) -> ExportedGraph:
    started = time.monotonic()
    function = copy.deepcopy(function).cpu().float().eval()  # the caller's may be on a GPU
    with torch.inference_mode():
        reference = function(torch.from_numpy(check_pixels)).numpy()
    graph = _onnx_bytes(function, torch.from_numpy(check_pixels[:2]))
    graph_path, reference_path, manifest_path = _paths(directory, name)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # the manifest goes last: none, no trusted graph
    atomic_write_bytes(graph_path, graph)
    buffer = io.BytesIO()
    np.savez(buffer, pixels=check_pixels, reference=reference)
    atomic_write_bytes(reference_path, buffer.getvalue())
    manifest = {
        "format": FORMAT,
        "identity": dict(identity),
        "graph_sha256": sha256_file(graph_path),
        "reference_sha256": sha256_file(reference_path),
        "input": {"name": INPUT_NAME, "dtype": "uint8",
                  "shape": ["batch", *check_pixels.shape[1:]]},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", *reference.shape[1:]]},
        "opset": OPSET,
        "torch": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("exported %s (%.1f MB) in %.1f s to %s", name, len(graph) / 1e6,
             time.monotonic() - started, graph_path)
    return ExportedGraph(graph_path, manifest, check_pixels, reference)


def _onnx_bytes(function: nn.Module, example: torch.Tensor) -> bytes:
    """The ONNX graph, batch dimension dynamic.

    TorchScript-based export first: 2 s for Lite0 here against 12 s through
    ``torch.export`` (dynamo), and the same vectors. Dynamo where it is the only one.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        try:
            torch.onnx.export(
                function, (example,), buffer, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        except (TypeError, RuntimeError, NotImplementedError) as exc:
            log.info("TorchScript ONNX export unavailable (%s); using torch.export", exc)
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(
                function, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), dynamo=True, verbose=False,
            )
            with tempfile.TemporaryDirectory() as scratch:
                program.save(f"{scratch}/graph.onnx")
                return Path(f"{scratch}/graph.onnx").read_bytes()
    return buffer.getvalue()

"""indexer.model.export: ONNX graphs cached beside the model, refused when they are not its own."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from training_factory import write_tiny_model

from indexer.model.backbone import backbone_data_config, build_backbone
from indexer.model.export import (
    GraphRefused,
    PixelFunction,
    check_outputs,
    cosines,
    ensure_graph,
    reference_photos,
)
from indexer.model.modeldir import (
    EmbeddingModel,
    graph_directory,
    graph_identity,
    load_model_dir,
    save_model_dir,
)
from indexer.model.preprocess import Preprocessor
from indexer.model.runtime import open_runtime


def export(model, cache_dir=None):
    """What the embedder does: the model's graph where it belongs."""
    preprocessor = Preprocessor(model.data_config)
    return ensure_graph(
        PixelFunction(model, model.data_config), name="embedding",
        directory=graph_directory(model, cache_dir), identity=graph_identity(model),
        check_pixels=reference_photos(preprocessor.from_image),
    )


def onnxruntime_outputs(graph, pixels):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": pixels})[0]


def tiny_trained_model(directory, seed=1):
    """A trained model's whole function: backbone, linear head, blend, normalisation."""
    torch.manual_seed(seed)
    backbone = build_backbone("test_efficientnet").eval()
    head = torch.nn.Linear(int(backbone.num_features), 8)
    model = EmbeddingModel(backbone, head, architecture="test_efficientnet",
                           data_config=backbone_data_config(backbone))
    model.add_pretrained_blend(1, 0.5)
    save_model_dir(directory, model, loss="softtriple")
    return load_model_dir(directory)


def test_pretrained_graph_round_trip(pretrained_lite0, tmp_path, photo_files):
    graph = export(pretrained_lite0, tmp_path / "cache")
    assert graph.path.parent == tmp_path / "cache" / "graphs" / pretrained_lite0.version
    manifest = json.loads(graph.path.with_suffix(".json").read_text())
    assert manifest["identity"]["model_version"] == pretrained_lite0.version
    assert manifest["input"]["dtype"] == "uint8"
    # The reference photos are real ones, and the reference is PyTorch's own output.
    assert graph.check_pixels.shape == (4, 224, 224, 3) and graph.check_pixels.std() > 30
    with torch.inference_mode():
        expected = PixelFunction(pretrained_lite0, pretrained_lite0.data_config)(
            torch.from_numpy(graph.check_pixels)).numpy()
    np.testing.assert_allclose(graph.reference, expected, atol=1e-6)
    # The graph is the same function on photos it was not checked on.
    preprocessor = Preprocessor(pretrained_lite0.data_config)
    pixels = np.stack([preprocessor.from_path(path).numpy() for path in photo_files])
    with torch.inference_mode():
        torch_vectors = pretrained_lite0(
            (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.5) / 127.5).numpy()
    assert cosines(onnxruntime_outputs(graph, pixels), torch_vectors).min() >= 0.9999
    # Used again: the cached files, not a second export.
    mtime = graph.path.stat().st_mtime_ns
    again = export(pretrained_lite0, tmp_path / "cache")
    assert again.path.stat().st_mtime_ns == mtime and again.sha256 == graph.sha256


def test_trained_model_graph_lives_in_its_directory(tmp_path):
    model = tiny_trained_model(tmp_path / "shelf-v1")
    graph = export(model)
    assert graph.path == tmp_path / "shelf-v1" / "onnx" / "embedding.onnx"
    outputs = onnxruntime_outputs(graph, graph.check_pixels)
    assert outputs.shape == (4, model.dim) == graph.reference.shape
    assert cosines(outputs, graph.reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(outputs, axis=1), 1.0, atol=1e-5)
    # Both halves of the blend are in the graph: sqrt(0.5) of each.
    learned = np.linalg.norm(outputs[:, : model.learned_dim], axis=1)
    np.testing.assert_allclose(learned, np.sqrt(0.5), atol=1e-5)


def test_a_tampered_graph_is_refused_and_rebuilt(tmp_path, caplog):
    model = tiny_trained_model(tmp_path / "m")
    graph = export(model)
    original = graph.path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    graph.path.write_bytes(bytes(tampered))
    with caplog.at_level(logging.INFO, logger="indexer.model.export"):
        rebuilt = export(model)
    assert "embedding.onnx does not match its checksum" in caplog.text
    assert rebuilt.path.read_bytes() == original  # exported anew, deterministically
    reference_file = graph.path.with_name("embedding.reference.npz")
    reference_file.write_bytes(reference_file.read_bytes()[:-10])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="indexer.model.export"):
        export(model)
    assert "embedding.reference.npz does not match its checksum" in caplog.text


def test_a_graph_made_for_another_model_version_is_refused(tmp_path, caplog):
    first = tiny_trained_model(tmp_path / "first")
    export(first)
    write_tiny_model(tmp_path / "second")  # another model, its directory given the first's graph
    second = load_model_dir(tmp_path / "second")
    (tmp_path / "second" / "onnx").mkdir()
    for path in (tmp_path / "first" / "onnx").glob("embedding*"):
        (tmp_path / "second" / "onnx" / path.name).write_bytes(path.read_bytes())
    with caplog.at_level(logging.INFO, logger="indexer.model.export"):
        graph = export(second)
    assert "made for another model: model_version" in caplog.text
    assert first.version in caplog.text and "tiny-test" in caplog.text
    assert graph.manifest["identity"]["model_version"] == "tiny-test"
    assert graph.reference.shape == (4, second.dim) != (4, first.dim)


def test_a_forged_manifest_still_cannot_pass_other_vectors(tmp_path):
    """Even a graph whose checksums were forged to match is checked by its outputs."""
    model = tiny_trained_model(tmp_path / "m")
    graph = export(model)
    other = tiny_trained_model(tmp_path / "other", seed=2)  # same shapes, other weights
    other_graph = export(other)
    graph.path.write_bytes(other_graph.path.read_bytes())
    manifest_path = graph.path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    from indexer.fsutil import sha256_file

    manifest["graph_sha256"] = sha256_file(graph.path)
    manifest_path.write_text(json.dumps(manifest))
    forged = export(model)
    # The manifest now vouches for the wrong graph.
    assert forged.path.read_bytes() == other_graph.path.read_bytes()
    with pytest.raises(GraphRefused, match="cosine to PyTorch"):
        open_runtime("onnxruntime", torch_function=lambda: None, graph=lambda: forged,
                     device=torch.device("cpu"), precision="fp32")


def test_check_outputs_refuses_nan_and_shape_mismatch(tmp_path):
    model = tiny_trained_model(tmp_path / "m")
    graph = export(model)
    with pytest.raises(GraphRefused, match="output shape"):
        check_outputs(graph.reference[:, :3], graph, 0.9999, "test")
    with pytest.raises(GraphRefused, match="cosine to PyTorch nan"):
        check_outputs(np.full_like(graph.reference, np.nan), graph, 0.9999, "test")
    assert check_outputs(graph.reference, graph, 0.9999, "test") == pytest.approx(1.0)

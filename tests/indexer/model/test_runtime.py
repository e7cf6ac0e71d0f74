"""indexer.model.runtime: every runtime gives PyTorch's vectors; a missing one gives way."""

from __future__ import annotations

import logging
import sys
import threading

import faiss
import numpy as np
import pytest
import torch

from indexer.model.embed import Embedder
from indexer.model.export import cosines
from indexer.model.runtime import RuntimeUnavailable, installed, open_runtime

RUNTIMES = ["openvino", "onnxruntime", "torch"]


def vectors(embedder, paths):
    return np.concatenate([batch.vectors for batch in embedder.embed_paths(paths)])


@pytest.fixture(scope="module")
def torch_fp32(pretrained_lite0):
    return Embedder(pretrained_lite0, precision="fp32", runtime="torch", workers=0,
                    batch_size=4)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_gives_pytorchs_vectors_on_real_photos(runtime, pretrained_lite0,
                                                            torch_fp32, photo_files, cache_dir):
    expected = vectors(torch_fp32, photo_files)
    fp32 = Embedder(pretrained_lite0, precision="fp32", runtime=runtime, batch_size=2,
                    cache_dir=cache_dir)
    assert fp32.runtime.name == runtime
    assert cosines(vectors(fp32, photo_files), expected).min() >= 0.9999
    # The engine's default precision (bf16 where the CPU has it): still the same index.
    default = Embedder(pretrained_lite0, runtime=runtime, batch_size=2, cache_dir=cache_dir)
    assert cosines(vectors(default, photo_files), expected).min() >= 0.998


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_vectors_of_every_runtime_search_the_same_index(runtime, pretrained_lite0, torch_fp32,
                                                        photo_files, sample_photos, cache_dir):
    """An index built by one runtime answers queries embedded by another."""
    indexed = vectors(torch_fp32, photo_files)
    index = faiss.IndexFlatIP(indexed.shape[1])
    index.add(indexed)
    embedder = Embedder(pretrained_lite0, runtime=runtime, cache_dir=cache_dir)
    queries = embedder.embed_images([sample_photos["china"], sample_photos["flower"]])
    scores, ids = index.search(queries, 1)
    assert ids[:, 0].tolist() == [0, 1]  # each photo finds its own file
    assert scores.min() > 0.99


def test_one_query_takes_the_latency_path_and_gives_the_batch_vector(
        pretrained_lite0, sample_photos, cache_dir):
    embedder = Embedder(pretrained_lite0, precision="fp32", runtime="openvino",
                        cache_dir=cache_dir)
    photos = [sample_photos["china"], sample_photos["flower"]]
    batched = embedder.embed_images(photos)
    one = np.concatenate([embedder.embed_images([photo]) for photo in photos])
    assert embedder.runtime._latency is not None  # the LATENCY model answered the queries
    assert cosines(one, batched).min() >= 0.9999


@pytest.mark.parametrize("runtime", ["openvino", "torch"])
def test_run_many_gives_each_item_its_own_outputs_in_order(runtime, pretrained_lite0,
                                                          sample_photos, cache_dir):
    """The pipeline's path: batches overlapped (OpenVINO) or not, the same outputs as
    ``run`` batch by batch, items without pixels passed through, and a consumer that
    stops early leaves nothing running (the next call still answers)."""
    embedder = Embedder(pretrained_lite0, precision="fp32", runtime=runtime,
                        cache_dir=cache_dir, batch_size=4)
    photos = np.stack([embedder.preprocessor.from_image(photo).numpy()
                       for photo in sample_photos.values()])
    pixels = np.concatenate([photos, photos[:, :, ::-1], photos[:, ::-1]])  # 6 images
    batches = [pixels[:3], None, pixels[3:], pixels[1:2], None, pixels[::-1]]
    items = list(enumerate(batches))
    answered = list(embedder.runtime.run_many(items, lambda item: item[1]))
    assert [item for item, _ in answered] == items
    for (_, batch), outputs in answered:
        if batch is None:
            assert outputs is None
        else:
            assert outputs.shape == (len(batch), embedder.dim)
            assert cosines(outputs, embedder.runtime.run(batch)).min() >= 0.99999
    stream = embedder.runtime.run_many(items, lambda item: item[1])
    next(stream)
    stream.close()
    assert cosines(embedder.runtime.run(pixels), answered[-1][1][::-1]).min() >= 0.99999


def test_openvino_is_safe_to_share_between_threads(pretrained_lite0, photo_files, cache_dir):
    """API threads share one embedder; each call takes infer requests of its own."""
    embedder = Embedder(pretrained_lite0, precision="fp32", runtime="openvino",
                        cache_dir=cache_dir)
    expected = vectors(embedder, photo_files)
    results, errors = [], []

    def embed():
        try:
            results.append(vectors(embedder, photo_files))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=embed) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4
    for result in results:
        assert cosines(result, expected).min() >= 0.99999


def test_a_runtime_that_is_not_installed_gives_way(monkeypatch, pretrained_lite0, photo_files,
                                                   torch_fp32, cache_dir, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails
    assert not installed("openvino")
    with pytest.raises(RuntimeUnavailable, match="openvino is not installed"):
        open_runtime("openvino", torch_function=lambda: None, graph=lambda: None,
                     device=torch.device("cpu"), precision="fp32")
    with caplog.at_level(logging.WARNING, logger="indexer.model.calibrate"):
        asked = Embedder(pretrained_lite0, precision="fp32", runtime="openvino",
                         cache_dir=cache_dir)
    assert "runtime openvino unavailable, choosing another: openvino is not installed" in (
        caplog.text)
    assert asked.runtime.name == "onnxruntime"  # what auto chooses among the rest
    assert Embedder(pretrained_lite0, cache_dir=cache_dir).runtime.name == "onnxruntime"
    assert cosines(vectors(asked, photo_files), vectors(torch_fp32, photo_files)).min() >= 0.9999

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    neither = Embedder(pretrained_lite0, precision="fp32", cache_dir=cache_dir)
    assert neither.runtime.name == "torch"
    assert cosines(vectors(neither, photo_files), vectors(torch_fp32, photo_files)).min() >= (
        0.99999)


def test_an_unknown_runtime_is_refused(pretrained_lite0):
    with pytest.raises(ValueError, match="runtime must be one of auto, openvino, onnxruntime"):
        Embedder(pretrained_lite0, runtime="tensorflow")


def test_openvino_leaves_the_threads_signal_stack_as_it_was(pretrained_lite0, sample_photos,
                                                            cache_dir):
    """compile_model installs an alternate signal stack it does not keep valid; a signal
    handled on it later killed the process (SIGSEGV), so the runtime puts it back."""
    import ctypes

    from indexer.model.runtime import _SignalStack

    libc = ctypes.CDLL(None, use_errno=True)

    def signal_stack():
        current = _SignalStack()
        assert libc.sigaltstack(None, ctypes.byref(current)) == 0
        return current.ss_sp, current.ss_flags, current.ss_size

    before = signal_stack()
    embedder = Embedder(pretrained_lite0, runtime="openvino", cache_dir=cache_dir)
    embedder.embed_images([sample_photos["china"]])  # the query model compiles lazily
    assert embedder.runtime.name == "openvino"
    assert signal_stack() == before

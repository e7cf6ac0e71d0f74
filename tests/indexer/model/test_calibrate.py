"""indexer.model.calibrate: runtime and batch come from a measurement, remembered per machine."""

from __future__ import annotations

import json
import logging
import sys

import torch

from indexer.model.calibrate import (
    CALIBRATION_FILE,
    rate_ladder,
    select_runtime,
    smallest_near_best,
)
from indexer.model.embed import Embedder
from indexer.model.runtime import Runtime


class SleepingRuntime(Runtime):
    """A runtime whose speed is known: a fixed cost per call plus a cost per image."""

    def __init__(self, per_call: float, per_image: float) -> None:
        self.per_call, self.per_image = per_call, per_image
        self.name = "sleeping"

    def run(self, pixels):
        import time

        time.sleep(self.per_call + self.per_image * len(pixels))
        return pixels.reshape(len(pixels), -1)[:, :2].astype("float32")


def test_the_ladder_finds_where_the_batch_stops_paying():
    # 20 ms per call + 1 ms per image: batches amortise the call cost, up the ladder.
    rates = rate_ladder(SleepingRuntime(0.02, 0.001), (2, 2, 3), (1, 4, 16, 64))
    assert list(rates) == [1, 4, 16, 64]
    assert rates[1] < rates[4] < rates[16] < rates[64]
    assert smallest_near_best({1: 50.0, 8: 98.0, 16: 100.0, 32: 99.0}) == 8
    assert smallest_near_best({1: 50.0, 8: 90.0, 16: 100.0}) == 16


def test_the_ladder_stops_when_larger_batches_get_slower():
    class Slower(SleepingRuntime):
        def run(self, pixels):  # each image costs more the more there are (cache misses)
            self.per_image = 0.0005 * len(pixels)
            return super().run(pixels)

    rates = rate_ladder(Slower(0.0, 0.0), (2, 2, 3), (1, 2, 4, 8, 16, 32, 64))
    assert 64 not in rates  # two sizes clearly worse than the best: no need to go on


def test_auto_measures_once_and_remembers_it(pretrained_lite0, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="indexer.model.calibrate"):
        first = Embedder(pretrained_lite0, cache_dir=tmp_path)
    assert "runtime measured (img/s): openvino b1" in caplog.text
    assert "onnxruntime b1" in caplog.text
    entries = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    (key, entry), = entries.items()
    assert "|cpu|" in key and "cores=" in key and "openvino=" in key  # what it depends on
    rates = entry["rates"][entry["runtime"]]
    assert first.runtime.name == entry["runtime"] and first.batch_size == entry["batch_size"]
    best = max(max(by_batch.values()) for by_batch in entry["rates"].values())
    assert max(rates.values()) == best  # the fastest runtime won
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = Embedder(pretrained_lite0, cache_dir=tmp_path)
    assert "runtime measured" not in caplog.text and "measured earlier here" in caplog.text
    assert (second.runtime.name, second.batch_size) == (first.runtime.name, first.batch_size)


def test_a_fixed_batch_is_kept_and_only_the_runtime_measured(pretrained_lite0, tmp_path):
    embedder = Embedder(pretrained_lite0, batch_size=3, cache_dir=tmp_path)
    assert embedder.batch_size == 3
    entry, = json.loads((tmp_path / CALIBRATION_FILE).read_text()).values()
    assert all(list(by_batch) == ["3"] for by_batch in entry["rates"].values())


def test_an_unreadable_or_stale_measurement_is_measured_again(pretrained_lite0, tmp_path,
                                                              caplog, monkeypatch):
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="indexer.model.calibrate"):
        Embedder(pretrained_lite0, cache_dir=tmp_path)
    assert f"ignoring unreadable {tmp_path / CALIBRATION_FILE}" in caplog.text
    entries = json.loads((tmp_path / CALIBRATION_FILE).read_text())
    for entry in entries.values():
        entry["runtime"] = "openvino"
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(entries))
    monkeypatch.setitem(sys.modules, "openvino", None)  # chosen before, gone now
    embedder = Embedder(pretrained_lite0, cache_dir=tmp_path)
    assert embedder.runtime.name == "onnxruntime"
    entry, = json.loads((tmp_path / CALIBRATION_FILE).read_text()).values()
    assert entry["runtime"] == "onnxruntime" and "openvino" not in entry["rates"]


def test_a_configured_runtime_measures_its_batch(pretrained_lite0, tmp_path):
    selection = select_runtime(
        "onnxruntime", device=torch.device("cpu"), precision="fp32", threads=None,
        torch_function=lambda: None,
        graph=lambda: _graph(pretrained_lite0, tmp_path),
        input_shape=(224, 224, 3), batch_size=None, cache_dir=tmp_path, what="test",
    )
    assert selection.runtime.name == "onnxruntime"
    assert selection.reason == "onnxruntime as configured"
    entry, = json.loads((tmp_path / CALIBRATION_FILE).read_text()).values()
    assert entry["batch_size"] == selection.batch_size
    assert selection.batch_size == smallest_near_best(
        {int(b): r for b, r in entry["rates"]["onnxruntime"].items()})


def _graph(model, directory):
    from indexer.model.export import PixelFunction, ensure_graph, reference_photos
    from indexer.model.modeldir import graph_identity
    from indexer.model.preprocess import Preprocessor

    return ensure_graph(PixelFunction(model, model.data_config), name="embedding",
                        directory=directory / "graph", identity=graph_identity(model),
                        check_pixels=reference_photos(Preprocessor(model.data_config).from_image))

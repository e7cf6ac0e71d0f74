"""indexer.model.loading: loaders keep the input order, run ahead, and report failures."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from indexer.model.loading import choose_loader, load_batches, prefetched
from indexer.model.preprocess import Preprocessor

TINY_CONFIG = {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 1.0,
               "crop_mode": "center", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def test_prefetched_keeps_order_whatever_finishes_first():
    def load(job: int) -> int:
        time.sleep(0.02 if job % 2 == 0 else 0.0)  # even jobs finish last
        return job * 10

    assert list(prefetched(range(9), load, workers=3)) == [j * 10 for j in range(9)]


def test_prefetched_runs_workers_plus_one_ahead_and_zero_workers_inline():
    started = []

    def load(job: int) -> int:
        started.append(job)
        return job

    results = prefetched(range(10), load, workers=2)
    assert next(results) == 0
    time.sleep(0.05)
    assert sorted(started) == [0, 1, 2, 3]  # the first plus workers + 1 waiting
    results.close()

    threads = set()
    inline = prefetched(range(3), lambda job: threads.add(threading.get_ident()), workers=0)
    list(inline)
    assert threads == {threading.get_ident()}


@pytest.mark.parametrize("loader", ["thread", "process"])
def test_batches_hold_every_position_once(tmp_path, loader):
    from PIL import Image

    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (40 + i, 30), (i * 40, 0, 0)).save(path)
        paths.append(path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    paths.insert(2, tmp_path / "bad.png")
    batches = list(load_batches(paths, Preprocessor(TINY_CONFIG), batch_size=4, workers=1,
                                loader=loader, pin_memory=False))
    assert [b.indices.tolist() for b in batches] == [[0, 1, 3], [4, 5]]
    assert batches[0].failures == [(2, "not an image: unrecognised format")]
    assert batches[0].pixels.shape == (3, 32, 32, 3) and batches[0].pixels.dtype == torch.uint8


def test_auto_loader_is_threads_on_cpu_and_unknown_loaders_are_refused():
    cpu = torch.device("cpu")
    assert choose_loader("auto", cpu) == "thread"
    assert choose_loader("process", cpu) == "process"
    assert choose_loader("auto", torch.device("cuda")) == "process"
    with pytest.raises(ValueError, match="auto, process, thread"):
        choose_loader("fibers", cpu)


def test_process_loaders_survive_a_process_running_openvino(tmp_path, pretrained_lite0):
    """OpenVINO's compile_model left a broken alternate signal stack on its thread: the
    DataLoader's SIGCHLD handler then crashed the process (SIGSEGV) when a worker
    exited (indexer.model.runtime.calling_threads_signal_stack)."""
    from PIL import Image

    from indexer.model.embed import Embedder

    Embedder(pretrained_lite0, runtime="openvino", precision="fp32", cache_dir=tmp_path / "c")
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (40, 30 + i), (0, i * 40, 0)).save(path)
        paths.append(path)
    for _ in range(2):
        batches = list(load_batches(paths, Preprocessor(TINY_CONFIG), batch_size=4, workers=2,
                                    loader="process", pin_memory=False))
        assert [b.indices.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5]]

"""The training trunk cache: PyTorch eager (before) against the fast runtime (now), one run.

`lookalike train` computes the frozen trunk's output for every view of every training
photo before the first epoch (:class:`indexer.training.inputs.CachedInputs`). This
builds that cache for the same photos twice, in alternating rounds: with
``runtime="torch"`` (PyTorch eager, the precision `auto` gives, as before) and with
``runtime="auto"`` (the runtime measured fastest here, checked against PyTorch), and
prints views/s, the speed-up and how close the cached values are.

    .venv/bin/python tests/bench/bench_trunk_cache.py            # 256 photos x 4 views
    .venv/bin/python tests/bench/bench_trunk_cache.py --limit 512 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

# indexer.model before torch: it sets the OpenMP wait policy the product runs with.
from indexer.model.export import cosines  # noqa: E402, I001
from indexer.training.config import TrainConfig  # noqa: E402
from indexer.training.data import read_labelled  # noqa: E402
from indexer.training.trainer import Trainer  # noqa: E402

import numpy as np  # noqa: E402

DEFAULT_IMAGES = Path("/work/shared/datasets/grocerystore/dataset/train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="labelled folders (class = sub-folder), default: %(default)s")
    parser.add_argument("--limit", type=int, default=256, help="photos (default 256)")
    parser.add_argument("--views", type=int, default=4, help="views per photo (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations (default 2)")
    return parser.parse_args(argv)


class _Data:
    """What Trainer._inputs needs of TrainingData: the photos."""

    def __init__(self, images):
        self.train = images
        self.validation = []
        self.train_classes = sorted({image.label for image in images})


def build_cache(images, runtime: str, views: int, scratch: Path) -> tuple[float, np.ndarray, str]:
    config = TrainConfig(views=views, device="cpu")
    trainer = Trainer(config, _Data(images), scratch / runtime, runtime=runtime,
                      cache_dir=scratch / "cache")
    trainer.build_model()
    selection = trainer.trunk_runtime()  # export, check and measurement: not the cache
    started = time.perf_counter()
    inputs = trainer._inputs(images, "train")
    seconds = time.perf_counter() - started
    array = np.asarray(inputs.array, dtype=np.float32)
    for path in (scratch / runtime).glob("inputs-*"):
        path.unlink()
    how = f"{selection.runtime.describe()} batch {selection.batch_size}"
    return seconds, array, how


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    images = read_labelled([args.images])
    images = images[:: max(1, len(images) // args.limit)][: args.limit]
    for image in images:  # a warm page cache for both: disks are not measured here
        image.path.read_bytes()
    times: dict[str, list[float]] = {"torch": [], "auto": []}
    arrays, how = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for runtime in times:
                seconds, arrays[runtime], how[runtime] = build_cache(
                    images, runtime, args.views, Path(scratch))
                times[runtime].append(seconds)
    views = len(images) * args.views
    print(f"\ntrunk cache: {len(images)} photos x {args.views} views from {args.images}, "
          f"{args.rounds} rounds (median)")
    print(f"{'':44} {'seconds':>8} {'views/s':>8} {'speed-up':>9}")
    base = statistics.median(times["torch"])
    for runtime, label in (("torch", "before: PyTorch eager"), ("auto", "now: auto")):
        seconds = statistics.median(times[runtime])
        print(f"{label + ' (' + how[runtime] + ')':44} {seconds:8.1f} {views / seconds:8.1f} "
              f"{base / seconds:8.2f}x")
    flat = len(images) * args.views
    cos = cosines(arrays["auto"].reshape(flat, -1), arrays["torch"].reshape(flat, -1))
    print(f"cached values, now vs before: cosine min {cos.min():.5f}  mean {cos.mean():.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

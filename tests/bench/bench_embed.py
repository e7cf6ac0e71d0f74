"""Embedding throughput: the real pipeline against the model's pure forward pass.

The pipeline (``Embedder.embed_paths``: read, decode, resize, batch, forward, L2
normalise) should run close to the forward pass alone on random tensors, measured in the
same process with the same batch size, precision and thread settings. The ratio is what
matters (the absolute speed depends on the machine); the target is >= 80 %.

    .venv/bin/python tests/bench/bench_embed.py
    .venv/bin/python tests/bench/bench_embed.py --loaders process,thread,sync --limit 256

"CPU ms/img" is CPU time (ours plus loader processes') per image: unlike images/s it
barely depends on what else the machine runs, so it shows the pipeline's own overhead.

Forward and pipeline measurements alternate in rounds (each round embeds a fresh slice
of the photos), and each round gives a ratio, so that drift in machine load (other jobs
on shared cores) does not favour either side; the table shows the median. The
script also prints the cosine between bf16-autocast and fp32 vectors of a few photos.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

# indexer.model before torch: it sets the OpenMP wait policy the product runs with.
from indexer.model.embed import Embedder  # noqa: E402, I001
from indexer.model.device import usable_cores  # noqa: E402
from indexer.model.modeldir import load_model  # noqa: E402
from indexer.config import Settings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_IMAGES = Path("/work/shared/datasets/grocerystore/dataset/test")
LOADER_CHOICES = {
    "auto": ("auto", None),
    "process": ("process", None),
    "thread": ("thread", None),
    "sync": ("auto", 0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder searched recursively for *.jpg (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=512, help="images to embed (default 512)")
    parser.add_argument("--model", default="pretrained", help="model spec (default pretrained)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--precision", default=defaults.precision)
    parser.add_argument("--workers", type=int, default=defaults.loader_workers)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--loaders", default="auto",
                        help="comma list of auto (the default pipeline), process, thread, "
                             "sync (no overlap); default auto")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternations of forward and pipeline measurements (default 4)")
    parser.add_argument("--forward-batches", type=int, default=2,
                        help="timed random batches per forward measurement (default 2)")
    parser.add_argument("--cosine-sample", type=int, default=8,
                        help="photos for the bf16-vs-fp32 cosine (0: skip)")
    return parser.parse_args(argv)


@dataclass
class Sample:
    """One timed run: images processed, wall seconds, CPU seconds (ours and our children's)."""

    images: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.images / self.wall


@contextmanager
def timed(sample: list[Sample], images: int) -> Iterator[None]:
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # joined loader workers
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall0, cpu0 = time.perf_counter(), cpu()
    yield
    sample.append(Sample(images, time.perf_counter() - wall0, cpu() - cpu0))


def forward_sample(embedder: Embedder, batches: int) -> Sample:
    """The model alone on random channels_last input (one warm-up batch first)."""
    size = embedder.model.data_config["input_size"]
    x = torch.randn(embedder.batch_size, *size, device=embedder.device)
    x = x.contiguous(memory_format=torch.channels_last)
    out: list[Sample] = []
    with torch.inference_mode(), embedder.autocast():
        embedder.model(x)
        with timed(out, batches * embedder.batch_size):
            for _ in range(batches):
                y = embedder.model(x)
            y.float().cpu()
    return out[0]


def pipeline_sample(embedder: Embedder, paths: list[Path]) -> tuple[Sample, int]:
    """embed_paths over ``paths``, loader start-up included as in real use; and failures."""
    out: list[Sample] = []
    failed = 0
    with timed(out, len(paths)):
        for batch in embedder.embed_paths(paths):
            assert batch.vectors.dtype == np.float32
            failed += len(batch.failures)
    return out[0], failed


def bf16_cosines(model, paths: list[Path], args: argparse.Namespace) -> np.ndarray:
    common = dict(device=args.device, batch_size=len(paths), workers=0)
    fp32 = Embedder(model, precision="fp32", **common)
    bf16 = Embedder(model, precision="bf16", **common)
    a = np.concatenate([b.vectors for b in fp32.embed_paths(paths)])
    b = np.concatenate([b.vectors for b in bf16.embed_paths(paths)])
    return np.sum(a * b, axis=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    paths = sorted(args.images.rglob("*.jpg"))[: args.limit]
    if not paths:
        print(f"no *.jpg under {args.images}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    loaders = [name.strip() for name in args.loaders.split(",") if name.strip()]
    unknown = [name for name in loaders if name not in LOADER_CHOICES]
    if unknown:
        print(f"unknown loader {unknown[0]!r}; choose from {', '.join(LOADER_CHOICES)}",
              file=sys.stderr)
        return 2

    for path in paths:  # same warm page cache for every loader: disks are not measured here
        path.read_bytes()
    model = load_model(args.model, Settings())
    embedders = {}
    for name in loaders:
        loader, workers = LOADER_CHOICES[name]
        embedders[name] = Embedder(
            model, device=args.device, precision=args.precision, batch_size=args.batch_size,
            workers=args.workers if workers is None else workers, loader=loader,
        )
        pipeline_sample(embedders[name], paths[: args.batch_size])  # warm-up
    first = embedders[loaders[0]]

    # Each pipeline run is paired with a forward run just before it, and each round embeds
    # a fresh slice of the photos: a change in machine load (other jobs on shared cores)
    # hits both sides of a ratio alike. The table shows medians over the rounds.
    rounds = max(1, min(args.rounds, len(paths) // args.batch_size))
    slices = [paths[i::rounds] for i in range(rounds)]
    forward: dict[str, list[Sample]] = {name: [] for name in loaders}
    pipeline: dict[str, list[Sample]] = {name: [] for name in loaders}
    failures = dict.fromkeys(loaders, 0)
    for chunk in slices:
        for name, embedder in embedders.items():
            forward[name].append(forward_sample(embedder, args.forward_batches))
            sample, failed = pipeline_sample(embedder, chunk)
            pipeline[name].append(sample)
            failures[name] += failed

    all_forward = [f for name in loaders for f in forward[name]]
    print(f"\nmodel {model.version}  device {first.device}  precision {first.precision}  "
          f"batch {first.batch_size}  torch threads {torch.get_num_threads()}  "
          f"cores {usable_cores()}  OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}\n"
          f"{len(paths)} images from {args.images}, {rounds} rounds")
    print(f"{'':38} {'images/s':>9} {'% of forward':>13} {'(min-max)':>13} {'CPU ms/img':>11}")
    print(f"{'forward limit (random tensors)':38} "
          f"{statistics.median(f.rate for f in all_forward):9.2f} {100.0:12.1f}% {'':>13} "
          f"{1000 * statistics.median(f.cpu / f.images for f in all_forward):11.1f}")
    for name, embedder in embedders.items():
        ratios = [p.rate / f.rate for p, f in zip(pipeline[name], forward[name], strict=True)]
        how = f"{embedder.loader} x{embedder.workers}" if embedder.workers else "in-line"
        label = f"embed_paths ({name}: {how})"
        note = f"  ({failures[name]} failed)" if failures[name] else ""
        print(f"{label:38} {statistics.median(p.rate for p in pipeline[name]):9.2f} "
              f"{100 * statistics.median(ratios):12.1f}% "
              f"{f'({100 * min(ratios):.0f}-{100 * max(ratios):.0f}%)':>13} "
              f"{1000 * statistics.median(p.cpu / p.images for p in pipeline[name]):11.1f}"
              f"{note}")

    if args.cosine_sample > 0:
        sample = paths[:: max(1, len(paths) // args.cosine_sample)][: args.cosine_sample]
        cos = bf16_cosines(model, sample, args)
        print(f"bf16 autocast vs fp32 cosine on {len(sample)} photos: "
              f"min {cos.min():.5f}  mean {cos.mean():.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

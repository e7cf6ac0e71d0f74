"""Embedding speed: the runtimes and the product's pipeline against the old PyTorch forward.

One run prints:

1. the baseline, the old setting: PyTorch eager at batch 32 on random uint8 pixels,
   at the precision ``auto`` gives here (fp32, or bf16 autocast on a CPU with native
   bf16), channels_last;
2. each runtime's forward alone (OpenVINO, ONNX Runtime, PyTorch) at the batch the
   product chooses for it (the calibration ladder), against the baseline; and its
   single-image path (``run_one``);
3. the product's pipeline, ``Embedder.embed_paths`` with ``runtime="auto"`` and
   ``batch_size=None``, on real photos: against the baseline (target >= 4x) and the
   fastest runtime's forward (target >= 80 %);
4. single-query latency, ``Embedder.embed_images([photo])`` with preprocessing, of the
   ``auto`` embedder against a ``runtime="torch"`` one (the old path): target p50 <= half;
5. the cosine of each runtime's vectors to PyTorch fp32 vectors of real photos.

    .venv/bin/python tests/bench/bench_embed.py
    .venv/bin/python tests/bench/bench_embed.py --limit 64 --rounds 2 --queries 5

Forward and pipeline measurements alternate in rounds (each round embeds a fresh slice
of the photos, after one forward measurement of every runtime), and each round gives a
ratio, so drift in machine load (other jobs on shared cores) hits both sides alike; the
table shows medians. "CPU ms/img" is CPU time (ours plus joined loader processes') per
image: unlike images/s it barely depends on what else the machine runs. The photos are
read once before anything is timed: disks are not measured here.

``--cache-dir`` holds the exported graph and the runtime measurements (default: a fresh
temporary directory, so export, check and calibration all happen, and are timed).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

# indexer.model before torch: it sets the OpenMP wait policy the product runs with.
from indexer.model.embed import Embedder  # noqa: E402, I001
from indexer.model.calibrate import (  # noqa: E402
    CALIBRATION_FILE,
    RUNTIME_PACKAGES,
    cpu_model,
    package_version,
)
from indexer.model.device import resolve_precision, usable_cores  # noqa: E402
from indexer.model.export import PixelFunction, cosines  # noqa: E402
from indexer.model.modeldir import load_model  # noqa: E402
from indexer.model.runtime import Runtime, TorchRuntime, installed  # noqa: E402
from indexer.config import Settings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

DEFAULT_IMAGES = Path("/work/shared/datasets/grocerystore/dataset/test")
RUNTIME_CHOICES = ("openvino", "onnxruntime", "torch")
BASELINE_BATCH = 32  # what the engine embedded with before the runtimes
PIPELINE_VS_BASELINE = 4.0  # targets
PIPELINE_VS_FORWARD = 0.80
QUERY_VS_TORCH = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder searched recursively for *.jpg (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=512,
                        help="photos for the pipeline, the first in sorted order (default 512)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternations of forward and pipeline measurements (default 4)")
    parser.add_argument("--model", default="pretrained", help="model spec (default pretrained)")
    parser.add_argument("--runtimes", default=",".join(RUNTIME_CHOICES),
                        help="comma list of runtimes to measure alone (default %(default)s)")
    parser.add_argument("--queries", type=int, default=30,
                        help="single-image queries per embedder for the latency (default 30)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="runtime cache (exported graph, measurements); default: a fresh "
                             "temporary directory")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--workers", type=int, default=defaults.loader_workers,
                        help="loader workers (-1: automatic, the default)")
    parser.add_argument("--forward-images", type=int, default=128,
                        help="random images per forward measurement (default 128)")
    parser.add_argument("--cosine-sample", type=int, default=16,
                        help="photos for the cosine to PyTorch fp32 (0: skip; default 16)")
    args = parser.parse_args(argv)
    args.runtimes = [name.strip() for name in args.runtimes.split(",") if name.strip()]
    unknown = [name for name in args.runtimes if name not in RUNTIME_CHOICES]
    if unknown:
        parser.error(f"unknown runtime {unknown[0]!r}; choose from {', '.join(RUNTIME_CHOICES)}")
    for name in ("limit", "rounds", "queries", "forward_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


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
def timed(out: list[Sample], images: int) -> Iterator[None]:
    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # joined loader workers
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall0, cpu0 = time.perf_counter(), cpu()
    yield
    out.append(Sample(images, time.perf_counter() - wall0, cpu() - cpu0))


@dataclass
class Row:
    """One forward measured alone: a runtime at a batch, its samples, one per round."""

    label: str
    runtime: Runtime
    batch: int
    pixels: np.ndarray
    samples: list[Sample] = field(default_factory=list)

    def measure(self, images: int) -> None:
        """The runtime on random pixels through ``run_many`` (the pipeline's path, batches
        overlapped where the runtime can), one warm-up call first (as the pipeline has had)."""
        self.runtime.run(self.pixels)
        calls = max(1, math.ceil(images / self.batch))
        with timed(self.samples, calls * self.batch):
            for _ in self.runtime.run_many(range(calls), lambda _: self.pixels):
                pass

    @property
    def rate(self) -> float:
        return statistics.median(s.rate for s in self.samples)

    @property
    def cpu_ms(self) -> float:
        return 1000 * statistics.median(s.cpu / s.images for s in self.samples)


def pipeline_sample(embedder: Embedder, paths: list[Path]) -> tuple[Sample, int]:
    """embed_paths over ``paths``, loader start-up included as in real use; and failures."""
    out: list[Sample] = []
    failed = 0
    with timed(out, len(paths)):
        for batch in embedder.embed_paths(paths):
            assert batch.vectors.dtype == np.float32
            failed += len(batch.failures)
    return out[0], failed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ratios(a: list[Sample], b: list[Sample]) -> list[float]:
    return [x.rate / y.rate for x, y in zip(a, b, strict=True)]


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    return f"({scale * min(values):.{digits}f}-{scale * max(values):.{digits}f})"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def build_embedder(model, runtime: str, args: argparse.Namespace) -> tuple[Embedder, float]:
    """The product's embedder (batch measured for its runtime) and its construction time."""
    started = time.perf_counter()
    embedder = Embedder(model, device=args.device, workers=args.workers, runtime=runtime,
                        cache_dir=args.cache_dir)
    return embedder, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("indexer.model").setLevel(logging.INFO)  # export, checks, calibration
    paths = sorted(args.images.rglob("*.jpg"))[: args.limit]
    if not paths:
        print(f"no *.jpg under {args.images}", file=sys.stderr)
        return 2
    for path in paths:  # the same warm page cache for every measurement
        path.read_bytes()
    scratch = None
    if args.cache_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="bench-embed-cache-")
        args.cache_dir = Path(scratch.name)
    try:
        return run(args, paths)
    finally:
        if scratch is not None:
            scratch.cleanup()


def run(args: argparse.Namespace, paths: list[Path]) -> int:
    cache_state = ("reused" if (args.cache_dir / CALIBRATION_FILE).is_file() else "fresh")
    model = load_model(args.model, Settings())

    # The product's embedder first: with a fresh cache it exports, checks and calibrates.
    auto, first_seconds = build_embedder(model, "auto", args)
    _, again_seconds = build_embedder(model, "auto", args)  # what the next process pays
    device = auto.device
    shape = (*auto.preprocessor.input_size, 3)
    rng = np.random.default_rng(0)

    def pixels(batch: int) -> np.ndarray:
        return rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8)

    # 1. The old setting: PyTorch eager at batch 32, auto precision.
    baseline_precision = resolve_precision("auto", device)
    baseline = Row(f"baseline: torch eager {baseline_precision}",
                   TorchRuntime(PixelFunction(model, model.data_config), device,
                                baseline_precision), BASELINE_BATCH, pixels(BASELINE_BATCH))

    # 2. Each runtime at its own batch; the one auto chose is the pipeline's own object.
    rows: dict[str, Row] = {}
    skipped: dict[str, str] = {}
    embedders: dict[str, Embedder] = {}
    for name in args.runtimes:
        if name == auto.runtime.name:
            embedder = auto
        elif not installed(name):
            skipped[name] = "not installed"
            continue
        else:
            embedder, _ = build_embedder(model, name, args)
            if embedder.runtime.name != name:  # it fell back, with the reason logged
                skipped[name] = f"unavailable here (fell back to {embedder.runtime.name})"
                continue
        embedders[name] = embedder
        tag = " = auto" if embedder is auto else ""
        rows[name] = Row(f"{embedder.runtime.describe()}{tag}", embedder.runtime,
                         embedder.batch_size, pixels(embedder.batch_size))
    if "torch" not in embedders:  # the old query path, for the latency comparison
        embedders["torch"], _ = build_embedder(model, "torch", args)
    pipeline_runtime = auto.runtime.name
    if pipeline_runtime not in rows:  # measured alone anyway: the pipeline's own forward
        rows[pipeline_runtime] = Row(f"{auto.runtime.describe()} = auto", auto.runtime,
                                     auto.batch_size, pixels(auto.batch_size))

    # 3. Rounds: every forward, then the pipeline on a fresh slice of the photos.
    pipeline_sample(auto, paths[: auto.batch_size])  # warm-up: loader, first-call costs
    rounds = max(1, min(args.rounds, len(paths) // auto.batch_size))
    slices = [paths[i::rounds] for i in range(rounds)]
    pipeline: list[Sample] = []
    failures = 0
    for chunk in slices:
        for row in (baseline, *rows.values()):
            row.measure(args.forward_images)
        sample, failed = pipeline_sample(auto, chunk)
        pipeline.append(sample)
        failures += failed

    # 4. Latency: decoded photos, preprocessing included; the two embedders alternate.
    query_paths = [paths[i * len(paths) // args.queries] for i in range(args.queries)]
    queries = [Image.open(path).convert("RGB") for path in query_paths]
    latency: dict[str, list[float]] = {"auto": [], "torch": []}
    query_embedders = {"auto": auto, "torch": embedders["torch"]}
    for embedder in query_embedders.values():
        embedder.embed_images([queries[0]])  # warm-up
    for image in queries:
        for key, embedder in query_embedders.items():
            started = time.perf_counter()
            embedder.embed_images([image])
            latency[key].append(1000 * (time.perf_counter() - started))
    one = auto.preprocessor.from_image(queries[0])[None].numpy()
    run_one: dict[str, list[float]] = {name: [] for name in rows}
    for name in rows:
        rows[name].runtime.run_one(one)  # warm-up
    for _ in range(args.queries):
        for name, row in rows.items():
            started = time.perf_counter()
            row.runtime.run_one(one)
            run_one[name].append(1000 * (time.perf_counter() - started))

    # 5. Vectors against PyTorch fp32 on real photos.
    cosine_rows: list[tuple[str, np.ndarray]] = []
    if args.cosine_sample > 0:
        sample = paths[:: max(1, len(paths) // args.cosine_sample)][: args.cosine_sample]
        photos = np.stack([auto.preprocessor.from_path(path).numpy() for path in sample])
        reference = TorchRuntime(PixelFunction(model, model.data_config), device,
                                 "fp32").run(photos)
        for row in (baseline, *rows.values()):
            cosine_rows.append((row.label, cosines(row.runtime.run(photos), reference)))
        vectors = np.concatenate([b.vectors for b in auto.embed_paths(sample)])
        cosine_rows.append(("pipeline: auto embed_paths", cosines(vectors, reference)))

    # The report.
    fastest = max(rows, key=lambda name: rows[name].rate)
    versions = "  ".join(f"{p} {package_version(p)}" for p in RUNTIME_PACKAGES)
    print(f"\nmodel {model.version}  device {device}  CPU {cpu_model()}  "
          f"cores {usable_cores()}  precision {auto.precision}  "
          f"chosen {auto.runtime.describe()} batch {auto.batch_size}\n"
          f"{versions}  torch threads {torch.get_num_threads()}  "
          f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY')}\n"
          f"first Embedder (export + check + calibration, {cache_state} cache "
          f"{args.cache_dir}): {first_seconds:.1f} s; the next one (cache reused): "
          f"{again_seconds:.1f} s\n"
          f"{len(paths)} photos from {args.images}, {rounds} round{'s' * (rounds != 1)}, "
          f"{args.forward_images} random images per forward measurement")

    print(f"\n{'forward alone (random uint8 pixels)':40} {'batch':>5} {'img/s':>8} "
          f"{'x baseline':>10} {'(min-max)':>12} {'CPU ms/img':>10} {'run_one p50 ms':>14}")
    print(f"{baseline.label:40} {baseline.batch:5d} {baseline.rate:8.1f} {1.0:10.2f} "
          f"{'':>12} {baseline.cpu_ms:10.1f} {'-':>14}")
    for name, row in rows.items():
        r = ratios(row.samples, baseline.samples)
        mark = "  fastest" if name == fastest else ""
        print(f"{row.label:40} {row.batch:5d} {row.rate:8.1f} {statistics.median(r):10.2f} "
              f"{spread(r):>12} {row.cpu_ms:10.1f} "
              f"{statistics.median(run_one[name]):14.1f}{mark}")
    for name, why in skipped.items():
        print(f"{name:40} {why}")

    how = f"{auto.loader} x{auto.workers}" if auto.workers else "in-line"
    label = f"embed_paths (auto: {auto.runtime.name} b{auto.batch_size}, {how})"
    rate = statistics.median(s.rate for s in pipeline)
    cpu_ms = 1000 * statistics.median(s.cpu / s.images for s in pipeline)
    vs_baseline = ratios(pipeline, baseline.samples)
    vs_fastest = ratios(pipeline, rows[fastest].samples)
    note = f"  ({failures} photos failed)" if failures else ""
    print(f"\n{'pipeline (real photos)':40} {'img/s':>8} {'CPU ms/img':>10}")
    print(f"{label:40} {rate:8.1f} {cpu_ms:10.1f}{note}")
    print(f"  vs baseline: {statistics.median(vs_baseline):.2f}x {spread(vs_baseline)}"
          f"   target >= {PIPELINE_VS_BASELINE:.0f}x  "
          f"{verdict(statistics.median(vs_baseline) >= PIPELINE_VS_BASELINE)}")
    print(f"  vs {fastest} forward: {100 * statistics.median(vs_fastest):.1f}% "
          f"{spread(vs_fastest, 100, 0)}   target >= {100 * PIPELINE_VS_FORWARD:.0f}%  "
          f"{verdict(statistics.median(vs_fastest) >= PIPELINE_VS_FORWARD)}")

    print(f"\n{'single query: embed_images([photo])':40} {'p50 ms':>8} {'p90 ms':>8}")
    for key, embedder in query_embedders.items():
        print(f"{key + ' (' + embedder.runtime.describe() + ')':40} "
              f"{percentile(latency[key], 50):8.1f} {percentile(latency[key], 90):8.1f}")
    share = percentile(latency["auto"], 50) / percentile(latency["torch"], 50)
    print(f"  auto p50 / torch p50: {share:.2f}   target <= {QUERY_VS_TORCH}  "
          f"{verdict(share <= QUERY_VS_TORCH)}")

    if cosine_rows:
        print(f"\n{f'cosine to PyTorch fp32 ({len(sample)} photos)':40} {'min':>8} {'mean':>8}")
        for label, values in cosine_rows:
            print(f"{label:40} {values.min():8.5f} {values.mean():8.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

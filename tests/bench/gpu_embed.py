"""GPU check: embedding with the device's JPEG decoder against the CPU decoders and the forward.

One prepared run for a lent GPU machine (torch, timm and torchvision there; no faiss
needed; nothing outside reachable). On ``--device`` it measures, in images/s:

* the model's forward pass alone (random uint8 batches through ``PixelNormalizer``,
  autocast: fp16 on CUDA), the ceiling the pipelines are compared to;
* decoding alone, with the CPU loaders (``load_batches``) and with ``JpegBatchDecoder``;
* the pipeline with the CPU decoders (``Embedder.embed_paths``, as the product runs);
* the pipeline with ``JpegBatchDecoder`` feeding the same model: files read and headers
  checked on threads, decode/resize on the device, batches prefetched ``--prefetch`` ahead.

It also checks that both pipelines give the same vectors (cosine per image) and counts
what fell back to the CPU. Training speed is ``gpu_train_check.py``'s job.

    python tests/bench/gpu_embed.py --images .gpu/data --weights .gpu/lite0.safetensors \
        --out $OUT
    # smoke test anywhere (small defaults on the CPU):
    python tests/bench/gpu_embed.py --images /tmp/jpegs --device cpu --limit 16
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

# indexer.model before torch: it sets the OpenMP wait policy the product runs with.
from indexer.model.embed import Embedder  # noqa: E402, I001
from indexer.model.jpeg_decode import JpegBatchDecoder, gpu_decoding_available  # noqa: E402
from indexer.model.loading import LoadedBatch, load_batches, prefetched  # noqa: E402
from indexer.model.modeldir import pretrained_model  # noqa: E402
from indexer.model.preprocess import Preprocessor  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True,
                        help="folder searched recursively for *.jpg / *.jpeg")
    parser.add_argument("--weights", type=Path, help="backbone checkpoint (default: packaged)")
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--limit", type=int, default=8192, help="images (default 8192)")
    parser.add_argument("--batch-size", type=int, help="default 256 on CUDA, 16 on the CPU")
    parser.add_argument("--forward-batches", type=int,
                        help="timed random batches (default 20 on CUDA, 2 on the CPU)")
    parser.add_argument("--workers", type=int, default=-1,
                        help="CPU-decoder loader workers (default -1: the Embedder's choice)")
    parser.add_argument("--decode-threads", type=int, default=8,
                        help="JpegBatchDecoder's threads reading files (default 8)")
    parser.add_argument("--prefetch", type=int, default=2,
                        help="JpegBatchDecoder batches loading ahead of the model (default 2)")
    parser.add_argument("--out", type=Path, help="folder for gpu-embed-report.json")
    return parser.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run: Callable[[], int]) -> tuple[float, int]:
    """(seconds, images) of ``run()``, the device drained before and after."""
    sync(device)
    started = time.perf_counter()
    images = run()
    sync(device)
    return time.perf_counter() - started, images


def forward_rate(embedder: Embedder, batches: int) -> float:
    height, width = embedder.model.data_config["input_size"][-2:]
    size = embedder.batch_size
    pixels = torch.randint(0, 256, (size, height, width, 3), dtype=torch.uint8,
                           device=embedder.device)

    def run() -> int:
        for _ in range(batches):
            embedder.runtime.run(pixels)  # the product's forward: outputs back on the host
        return batches * size

    for _ in range(3):  # warm-up: cuDNN autotuning
        embedder.runtime.run(pixels)
    seconds, images = timed(embedder.device, run)
    return images / seconds


def gpu_batches(decoder: JpegBatchDecoder, paths: list[Path], batch_size: int,
                prefetch: int) -> Iterator[LoadedBatch]:
    def load(start: int) -> LoadedBatch:
        stop = min(start + batch_size, len(paths))
        return decoder.load(paths[start:stop], range(start, stop))

    yield from prefetched(range(0, len(paths), batch_size), load, prefetch, name="gpu-load")


@torch.inference_mode()
def forward(embedder: Embedder, pixels: torch.Tensor) -> np.ndarray:
    return embedder.runtime.run(pixels)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch_size = args.batch_size or (256 if cuda else 16)
    forward_batches = args.forward_batches or (20 if cuda else 2)
    paths = sorted(p for p in args.images.rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg"))[: args.limit]
    if not paths:
        print(f"no JPEGs under {args.images}", file=sys.stderr)
        return 2
    for path in paths:  # a warm page cache for every run: disks are not measured here
        path.read_bytes()
    if cuda:
        print(f"device decoder usable: {gpu_decoding_available(device)}")

    model = pretrained_model(args.arch, args.weights)
    # The CPU decoders as before nvJPEG (gpu_decode=False): what the H200 ran at 437 img/s.
    embedder = Embedder(model, device=args.device, batch_size=batch_size, workers=args.workers,
                        runtime="torch", gpu_decode=False)
    # The product as it runs now: its own runtime choice and decoder (nvJPEG on CUDA).
    product = Embedder(model, device=args.device, batch_size=batch_size, workers=args.workers)
    preprocessor = Preprocessor(model.data_config)
    decoder = JpegBatchDecoder(preprocessor, device, workers=args.decode_threads)
    warm = paths[:batch_size]
    rows: dict[str, float] = {}

    rows["forward (random uint8)"] = forward_rate(embedder, forward_batches)

    def cpu_decode() -> int:
        return sum(len(b.indices) + len(b.failures) for b in load_batches(
            paths, embedder.preprocessor, batch_size=batch_size, workers=embedder.workers,
            loader=embedder.loader, pin_memory=cuda))

    def gpu_decode() -> int:
        return sum(len(b.indices) + len(b.failures)
                   for b in gpu_batches(decoder, paths, batch_size, args.prefetch))

    cpu_vectors = np.zeros((len(paths), model.dim), np.float32)
    gpu_vectors = np.zeros((len(paths), model.dim), np.float32)

    def cpu_pipeline() -> int:
        for batch in embedder.embed_paths(paths):
            cpu_vectors[batch.indices] = batch.vectors
        return len(paths)

    def product_pipeline() -> int:
        return sum(len(b.indices) + len(b.failures) for b in product.embed_paths(paths))

    def gpu_pipeline() -> int:
        for batch in gpu_batches(decoder, paths, batch_size, args.prefetch):
            if batch.pixels is not None:
                gpu_vectors[batch.indices] = forward(embedder, batch.pixels)
        return len(paths)

    list(embedder.embed_paths(warm))  # warm-up: loader start, cuDNN for this batch size
    for batch in gpu_batches(decoder, warm, batch_size, args.prefetch):  # nvJPEG start-up
        forward(embedder, batch.pixels)
    decoder.counts.clear()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    product_decoder = "JpegBatchDecoder" if product.batch_decoder else "CPU decoders"
    for name, run in [("decode only, CPU loaders", cpu_decode),
                      ("decode only, JpegBatchDecoder", gpu_decode),
                      ("embed, CPU decoders (Embedder)", cpu_pipeline),
                      ("embed, JpegBatchDecoder", gpu_pipeline),
                      (f"embed, product ({product.runtime.name}, "
                       f"{product_decoder})", product_pipeline)]:
        seconds, images = timed(device, run)
        rows[name] = images / seconds

    forward_limit = rows["forward (random uint8)"]
    how = f"{embedder.loader} x{embedder.workers}" if embedder.workers else "in-line"
    print(f"\n{model.version}  {torch.cuda.get_device_name(device) if cuda else 'cpu'}  "
          f"{embedder.precision}  batch {batch_size}  {len(paths)} images from {args.images}\n"
          f"CPU loaders: {how};  JpegBatchDecoder: {args.decode_threads} threads, "
          f"{args.prefetch} batches ahead")
    print(f"{'':34} {'images/s':>10} {'% of forward':>13}")
    for name, rate in rows.items():
        print(f"{name:34} {rate:10.1f} {100 * rate / forward_limit:12.1f}%")

    cosines = np.sum(cpu_vectors * gpu_vectors, axis=1)  # both L2-normalised; 0 where failed
    embedded = np.linalg.norm(cpu_vectors, axis=1) > 0
    counts = {key: decoder.counts[key] // 2 for key in ("device", "header", "refused", "failed")}
    print(f"JpegBatchDecoder per pass: {counts['device']} on the device, {counts['header']} "
          f"to the CPU by header, {counts['refused']} refused by the device decoder, "
          f"{counts['failed']} failed")
    if embedded.any():
        kept = cosines[embedded]
        print(f"cosine JpegBatchDecoder vs CPU decoders on {kept.size} images: min {kept.min():.5f}"
              f"  median {statistics.median(kept.tolist()):.5f}"
              f"  below 0.999: {int((kept < 0.999).sum())}  below 0.99: {int((kept < 0.99).sum())}")
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    if peak is not None:
        print(f"peak device memory: {peak:.1f} GiB")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {
            "model": model.version, "device": str(device), "precision": embedder.precision,
            "batch_size": batch_size, "images": len(paths), "cpu_loader": how,
            "decode_threads": args.decode_threads, "prefetch": args.prefetch,
            "images_per_second": {name: round(rate, 1) for name, rate in rows.items()},
            "gpu_decoder_counts_per_pass": counts,
            "cosine_min": float(cosines[embedded].min()) if embedded.any() else None,
            "cosine_below_0.999": int((cosines[embedded] < 0.999).sum()),
            "peak_device_memory_gib": peak,
            "torch": torch.__version__,
        }
        (args.out / "gpu-embed-report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

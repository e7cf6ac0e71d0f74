"""GPU check: train the default configuration with mixed precision on CUDA, then embed.

Reports training images/s (steps of the trained tail, and the trunk-caching pass that
precedes them), embedding images/s (the full model through ``Embedder``, fp16), and
the test-class metrics. The GPU machine has no faiss, so the test embeddings are saved
and the metrics computed where faiss is, with ``--metrics-from``:

    # on the GPU machine (data: a downscaled copy of Grocery Store, see the README)
    python tests/bench/gpu_train_check.py --data .gpu/data --split .gpu/class_split.csv \
        --weights .gpu/lite0-fp16.safetensors --out $OUT
    # here
    .venv/bin/python tests/bench/gpu_train_check.py --metrics-from OUT/gpu-test-embeddings.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402


def metrics_from(path: Path) -> None:
    from indexer.model.evaluate import retrieval_metrics

    saved = np.load(path)
    metrics = retrieval_metrics(saved["vectors"], saved["labels"])
    for name, value in metrics.table_rows():
        print(f"{name:<12} {value}")


def train_and_embed(args) -> None:
    import torch

    from indexer.model.backbone import backbone_data_config, build_backbone
    from indexer.model.embed import Embedder
    from indexer.model.preprocess import Preprocessor
    from indexer.training.config import TrainConfig
    from indexer.training.data import prepare_training_data
    from indexer.training.trainer import Trainer

    overrides = {"epochs": args.epochs} if args.epochs else {}
    config = TrainConfig(device=args.device, amp=True, weights=str(args.weights), seed=args.seed,
                         workers=args.workers, **overrides)
    started = time.monotonic()
    data = prepare_training_data(
        [args.data],
        preprocessor=Preprocessor(backbone_data_config(build_backbone(config.backbone))),
        split_file=args.split, validation_fraction=config.validation_fraction)
    prepared = time.monotonic()
    trainer = Trainer(config, data, args.out / "run", progress=False)
    result = trainer.fit()
    trained = time.monotonic()

    model = result.model

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()
    embedder = Embedder(model, device=args.device, precision="auto", batch_size=256,
                        workers=args.workers)
    paths = [image.path for image in data.test]
    list(embedder.embed_paths(paths[:512]))  # warm-up: cuDNN autotuning, worker start
    sync()
    embed_started = time.monotonic()
    vectors = np.zeros((len(paths), model.dim), np.float32)
    for batch in embedder.embed_paths(paths):
        vectors[batch.indices] = batch.vectors
    sync()
    embed_seconds = time.monotonic() - embed_started

    # Forward pass alone on device-resident tensors: the ceiling the pipeline compares to.
    x = torch.randn(args.forward_batch, 3, 224, 224, device=args.device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), embedder.autocast():
        for _ in range(3):
            embedder.model(x)
        sync()
        forward_started = time.monotonic()
        for _ in range(10):
            embedder.model(x)
        sync()
    forward_rate = 10 * args.forward_batch / (time.monotonic() - forward_started)

    labels = np.array([image.label for image in data.test])
    np.savez(args.out / "gpu-test-embeddings.npz", vectors=vectors, labels=labels)
    report = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "mixed_precision": str(trainer.amp_dtype),
        "train_images": len(data.train), "test_images": len(data.test),
        "data_check_seconds": round(prepared - started, 1),
        "fit_seconds_including_trunk_cache": round(trained - prepared, 1),
        "train_steps_images_per_second": round(result.images_per_second, 1),
        "epoch_seconds": [r["seconds"] for r in result.history],
        "best_epoch": result.best_epoch,
        "validation": result.best_validation,
        "embed_pipeline_images_per_second": round(len(paths) / embed_seconds, 1),
        "embed_forward_only_images_per_second": round(forward_rate, 1),
        "trunk_cache_seconds": round(result.cache_seconds, 1),
    }
    (args.out / "gpu-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--split", type=Path)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--out", type=Path, default=Path("gpu-out"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--metrics-from", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, help="default: the trainer's default")
    parser.add_argument("--forward-batch", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.metrics_from:
        metrics_from(args.metrics_from)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    train_and_embed(args)


if __name__ == "__main__":
    main()

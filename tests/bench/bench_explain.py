"""Explain benchmark: one pair explained (decomposition, occlusion) against one search by
photo, p50 over ``--repeats`` calls each, on the engine's own code paths.

A fresh home takes in a generated sample catalogue (``indexer.sample``); the query is a
photo's bytes, decoded on every call as an upload is. The search runs with the
machine's configured runtime (``LOOKALIKE_RUNTIME`` / ``LOOKALIKE_PRECISION``, default
auto: what the API serves with); the explanation runs PyTorch in float32 on the CPU
whatever the runtime (``indexer.explain``). The target is explain <= 3x a search.

    .venv/bin/python tests/bench/bench_explain.py                # 20 repeats
    .venv/bin/python tests/bench/bench_explain.py --repeats 3    # quick
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from indexer.config import load_settings
from indexer.engine import Lookalike
from indexer.sample import write_sample_catalogue


def p50(call, repeats: int) -> float:
    call()  # warm: first-call allocations and caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--occlusion-repeats", type=int, default=None,
                        help="repeats for occlusion (default: --repeats, at most 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_sample_catalogue(root / "catalogue", products=4, shots=3, seed=3)
        engine = Lookalike.open(load_settings(home=root / "home"))
        engine.ingest(root / "catalogue")
        shots = sorted((root / "catalogue").rglob("*.jpg"))
        query = shots[0].read_bytes()
        result = engine.search(query, k=2).hits[1].item.id
        search_ms = p50(lambda: engine.search(query, k=10), args.repeats)
        explain_ms = p50(lambda: engine.explain(query, result), args.repeats)
        occlusion_ms = p50(lambda: engine.explain(query, result, method="occlusion"),
                           args.occlusion_repeats or min(args.repeats, 5))
        runtime = engine.embedder.runtime.describe()
        engine.close()
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads; search runtime: {runtime}")
    print(f"search by photo (k=10)    p50 {search_ms:8.1f} ms")
    print(f"explain, decomposition    p50 {explain_ms:8.1f} ms   {explain_ms / search_ms:5.1f}x")
    print(f"explain, occlusion        p50 {occlusion_ms:8.1f} ms   "
          f"{occlusion_ms / search_ms:5.1f}x")


if __name__ == "__main__":
    main()

"""Coarse assignment of one query: exact scan of the centroids vs an HNSW graph over them.

The numbers behind :mod:`indexer.index.coarse` (which quantizer assigns queries up to
how many lists). Points come from bench_index.py's generator (shaped like the Grocery
photos' embeddings), projected to 256-d by PCA and renormalised as 'auto' does;
``nlist`` of them are the centroids. For each ``nlist`` at its default nprobe: single-
thread p50 of the flat scan and of the graph at efSearch = nprobe and 2·nprobe, timed
in alternating rounds, and the share of the exact best ``nprobe`` lists the graph finds.
Build and k-means costs come from bench_index.py itself, e.g.
``--extra flat16k=PCA256,L2norm,IVF16384,PQ64 --extra hnsw16k=PCA256,L2norm,IVF16384_HNSW32,PQ64``.

    .venv/bin/python tests/bench/bench_coarse_quantizer.py --embeddings grocery.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bench_index  # noqa: E402

from indexer.index.factory import default_nprobe_for  # noqa: E402


def project(pca: faiss.PCAMatrix, vectors: np.ndarray) -> np.ndarray:
    out = pca.apply(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.normalize_L2(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300_000, help="generated points")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--nlists", default="4096,16384,65536")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)  # the cost of one query, free of OpenMP wake-ups
    real = bench_index.RealShape.from_file(args.embeddings)
    base, queries = bench_index.generate(real, args.n, args.queries, args.seed)
    pca = faiss.PCAMatrix(real.dim, 256)
    pca.train(base[: min(len(base), 65_536)])
    points, queries = project(pca, base), project(pca, queries)
    del base
    rng = np.random.default_rng(args.seed)
    print(f"{'nlist':>7} {'nprobe':>6} {'assignment':18} {'p50 ms':>8} {'lists found':>11}")
    for nlist in (int(v) for v in args.nlists.split(",")):
        centroids = points[rng.choice(len(points), nlist, replace=False)]
        flat = faiss.IndexFlatIP(256)
        flat.add(centroids)
        graph = faiss.IndexHNSWFlat(256, 32, faiss.METRIC_INNER_PRODUCT)
        graph.add(centroids)
        nprobe = default_nprobe_for(nlist)
        variants = {
            "flat scan": (flat, None),
            "graph ef=nprobe": (graph, faiss.SearchParametersHNSW(efSearch=nprobe)),
            "graph ef=2*nprobe": (graph, faiss.SearchParametersHNSW(efSearch=2 * nprobe)),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for start in range(args.rounds):
            for name, (index, params) in variants.items():
                for query in queries[start :: args.rounds]:
                    began = time.perf_counter()
                    index.search(query[None], nprobe, params=params)
                    times[name].append(time.perf_counter() - began)
        best = flat.search(queries, nprobe)[1]
        for name, (index, params) in variants.items():
            found = index.search(queries, nprobe, params=params)[1]
            share = np.mean([len(set(a) & set(b)) for a, b in zip(found, best, strict=True)])
            print(f"{nlist:7} {nprobe:6} {name:18} {np.median(times[name]) * 1e3:8.3f} "
                  f"{share / nprobe:11.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

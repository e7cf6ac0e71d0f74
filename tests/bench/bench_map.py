"""Map benchmark: the whole map computation (sample, PCA, t-SNE, k-means) at 5k and 50k points.

The engine's own code path (:func:`indexer.maps.sample_ids` then
:func:`indexer.maps.compute_layout`: faiss PCA to 50 dims, openTSNE, faiss
k-means) is timed on clustered synthetic vectors of the pretrained model's
dimension (1,280): a Gaussian mixture on the unit sphere (``--classes`` random
unit centres, each point its centre plus isotropic noise, L2-normalised), so
t-SNE has real structure to find. The sample is drawn from a catalogue twice the
size (``--catalogue-factor``), as the engine samples an index version.

The baseline, in the same run on the same machine: scikit-learn's ``TSNE``
(Barnes-Hut, PCA initialisation, the same perplexity) on the same 5,000 PCA
vectors; its row replaces only the t-SNE step, so the ratio compares t-SNE
implementations on equal terms. scikit-learn at 50,000 points is left out by
default (``--sklearn-50k`` runs it: tens of minutes on two cores). Also printed:
the 1-nearest-neighbour class agreement in 2-D (trustworthiness of the layout;
chance is 1/classes), so a faster layout that lost the structure would show.

    .venv/bin/python tests/bench/bench_map.py                 # 5k and 50k, sklearn at 5k
    .venv/bin/python tests/bench/bench_map.py --sizes 5000    # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import faiss
import numpy as np

from indexer.maps import auto_clusters, compute_layout, sample_ids
from indexer.maps.layout import effective_perplexity, kmeans, pca

DIM = 1280  # the pretrained tf_efficientnet_lite0's pooled features (indexer/model)


def mixture_on_sphere(n: int, dim: int, classes: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, classes, n)
    vectors = centres[labels] + rng.normal(scale=noise / np.sqrt(dim), size=(n, dim)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels


def neighbour_agreement(xy: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose nearest 2-D neighbour has the same class."""
    index = faiss.IndexFlatL2(2)
    points = np.ascontiguousarray(xy, dtype=np.float32)
    index.add(points)
    _, found = index.search(points, 2)
    return float(np.mean(labels[found[:, 1]] == labels))


def engine_map(vectors, labels, size: int, perplexity: float, seed: int) -> dict:
    started = time.perf_counter()
    ids = np.arange(len(vectors), dtype=np.int64)
    chosen = sample_ids(ids, size, seed)
    layout = compute_layout(vectors[chosen], perplexity=perplexity, seed=seed)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "k": layout.k, "method": layout.method,
            "agreement": neighbour_agreement(layout.xy, labels[chosen])}  # fmt: skip


def sklearn_map(vectors, labels, size: int, perplexity: float, seed: int) -> dict:
    from sklearn.manifold import TSNE

    started = time.perf_counter()
    chosen = sample_ids(np.arange(len(vectors), dtype=np.int64), size, seed)
    reduced = pca(vectors[chosen])
    _, k = kmeans(reduced, auto_clusters(size), seed)
    xy = TSNE(
        n_components=2, perplexity=effective_perplexity(perplexity, size), init="pca",
        random_state=seed, method="barnes_hut", n_jobs=os.cpu_count(),
    ).fit_transform(reduced)  # fmt: skip
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "k": k, "method": "scikit-learn TSNE (Barnes-Hut)",
            "agreement": neighbour_agreement(xy, labels[chosen])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--noise", type=float, default=0.8,
                        help="noise norm relative to a unit centre")
    parser.add_argument("--catalogue-factor", type=int, default=2)
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sklearn-50k", action="store_true",
                        help="also run the scikit-learn baseline at sizes above 5,000")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"vectors: {args.dim}-d, {args.classes}-class mixture on the sphere")
    rows = []
    baseline = {}
    for size in args.sizes:
        vectors, labels = mixture_on_sphere(size * args.catalogue_factor, args.dim,
                                            args.classes, args.noise, args.seed)
        result = engine_map(vectors, labels, size, args.perplexity, args.seed)
        rows.append(("engine (openTSNE)", size, result))
        print(f"  engine  {size:>6}: {result['seconds']:7.1f} s  {result['method']}", flush=True)
        if size <= 5000 or args.sklearn_50k:
            base = sklearn_map(vectors, labels, size, args.perplexity, args.seed)
            baseline[size] = base["seconds"]
            rows.append(("baseline (scikit-learn)", size, base))
            print(f"  sklearn {size:>6}: {base['seconds']:7.1f} s", flush=True)
        del vectors

    print()
    print("| map of | points | seconds | vs scikit-learn at that size | 1-NN class agreement "
          "in 2-D | clusters |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, size, result in rows:
        ratio = (f"{baseline[size] / result['seconds']:.1f}x faster"
                 if size in baseline and name.startswith("engine") else
                 "1.0x" if name.startswith("baseline") else "–")  # fmt: skip
        print(f"| {name} | {size:,} | {result['seconds']:.1f} | {ratio} | "
              f"{result['agreement']:.3f} | {result['k']} |")


if __name__ == "__main__":
    main()

"""Compact index vectors: retrieval quality of projected features on unseen classes.

The index holds vectors projected onto their principal components, fitted on the
vectors it indexes (``indexer/index/factory.py``). This script measures what that
does to finding products, on real photos with the class-disjoint protocol: from a
file of embeddings with class names (``lookalike evaluate … --save-embeddings``), for
each split file (``class_split.csv``'s ``half`` column, or any split CSV the engine
reads), the test classes' photos are searched exactly among themselves (R@1, MAP@R),
as full vectors (the baseline, same run) and after each projection:

* PCA fitted on the photos searched (what an index does with its catalogue), 512/256-d;
* PCA whitened (eigen power -0.5), fitted on the training classes' photos or on the
  photos searched;
* the ImageNet classifier's top singular directions (no data at all; pretrained
  features only).

A trained model's embeddings work the same way (``lookalike evaluate … --model RUN
--all-classes --save-embeddings``).

    .venv/bin/python tests/bench/bench_projection.py --embeddings grocery.npz \\
        --split $D/class_split.csv --split splits/grocery-produce-vs-packages.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from indexer.model.evaluate import recall_and_map_at_r  # noqa: E402
from indexer.model.weights import packaged_weights_path, read_state_dict  # noqa: E402
from indexer.splits import ClassSplit  # noqa: E402


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def pca(fit_on: np.ndarray, dim: int, eigen_power: float = 0.0) -> faiss.PCAMatrix:
    matrix = faiss.PCAMatrix(fit_on.shape[1], dim, eigen_power)
    matrix.train(np.ascontiguousarray(fit_on, dtype=np.float32))
    return matrix


def classifier_directions(architecture: str) -> np.ndarray:
    """Right singular vectors of the packaged ImageNet classifier's weight matrix."""
    weights = [t for t in read_state_dict(packaged_weights_path(architecture)).values()
               if t.ndim == 2][-1].float().numpy()  # fmt: skip
    return np.linalg.svd(weights, full_matrices=False)[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--split", type=Path, action="append", required=True)
    parser.add_argument("--architecture", default="tf_efficientnet_lite0")
    args = parser.parse_args(argv)
    with np.load(args.embeddings) as data:
        vectors = unit(data["vectors"])
        labels = np.asarray(data["labels"]).astype(str)
    directions = classifier_directions(args.architecture)
    print(f"{args.embeddings}: {len(vectors)} photos, {vectors.shape[1]}-d")
    for split_file in args.split:
        split = ClassSplit.from_csv(split_file)
        test = np.isin(labels, sorted(split.test))
        train = np.isin(labels, sorted(split.train))
        searched, names = vectors[test], labels[test]
        rows = {"full vectors": (searched, vectors.shape[1] * 4)}
        for dim in (512, 256):
            rows[f"PCA {dim}, fitted on the photos searched"] = (
                pca(searched, dim).apply(searched), dim * 2)
            rows[f"PCA {dim} whitened, fitted on the training classes"] = (
                pca(vectors[train], dim, -0.5).apply(searched), dim * 2)
            rows[f"PCA {dim} whitened, fitted on the photos searched"] = (
                pca(searched, dim, -0.5).apply(searched), dim * 2)
            if directions.shape[1] == vectors.shape[1]:  # the pretrained pooled features
                rows[f"classifier's top {dim} directions"] = (
                    searched @ directions[:dim].T, dim * 2)
        print(f"\n{split_file.name}: {test.sum()} test photos of {len(split.test)} classes "
              f"(training classes: {train.sum()} photos)")  # fmt: skip
        print(f"{'vectors':54} {'bytes':>6} {'R@1':>6} {'MAP@R':>6} {'vs full':>8}")
        base = None
        for name, (projected, size) in rows.items():
            metrics = recall_and_map_at_r(unit(projected), names)
            r1, map_r = metrics["recall_at_1"], metrics["map_at_r"]  # percentages
            base = base if base is not None else map_r
            print(f"{name:54} {size:6} {r1:6.1f} {map_r:6.1f} {map_r / base:7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

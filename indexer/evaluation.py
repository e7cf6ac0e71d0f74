"""Evaluate a model on labelled folders with the class-disjoint protocol.

Only the test classes are embedded: with a split file, its ``test`` classes;
with ``all_classes``, every class found (a folder of products the model has
never seen); otherwise the second half of the sorted classes. Every test image
then queries all the other test images (see :mod:`indexer.model.evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.config import Settings
from indexer.fsutil import atomic_write_text
from indexer.model.embed import Embedder
from indexer.model.evaluate import RetrievalMetrics, retrieval_metrics
from indexer.model.modeldir import load_model
from indexer.sources.folder import iter_folder
from indexer.splits import ClassSplit

log = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    model_version: str
    metrics: RetrievalMetrics
    test_classes: list[str]
    data: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    vectors: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def slug(self) -> str:
        digest = hashlib.sha256("\n".join(self.test_classes).encode()).hexdigest()[:8]
        return f"{self.model_version}-{digest}"

    def save(self, path: Path) -> None:
        document = {
            "model_version": self.model_version,
            "metrics": self.metrics.as_dict(),
            "test_classes": self.test_classes,
            "data": self.data,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "created": datetime.now(UTC).isoformat(),
        }
        atomic_write_text(Path(path), json.dumps(document, indent=2) + "\n")

    def save_embeddings(self, path: Path) -> None:
        """The test embeddings and labels (``vectors``, ``labels``) as an .npz file."""
        np.savez(path, vectors=self.vectors, labels=self.labels)


def labelled_images(folders: list[Path]) -> list[tuple[Path, str]]:
    """(path, class) for every image under ``folders``; the class is the parent folder."""
    found = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
        for record in iter_folder(Path(folder)):
            if record.label is None:
                raise ValueError(
                    f"{record.path}: images must sit in one sub-folder per class to be evaluated"
                )
            found.append((record.path, record.label))
    return found


def choose_test_classes(
    present: set[str], split_file: Path | None, all_classes: bool
) -> list[str]:
    if all_classes:
        chosen = set(present)
    elif split_file is not None:
        split = ClassSplit.from_csv(split_file)
        split.check_against(present)
        chosen = set(split.test)
    else:
        chosen = set(ClassSplit.halves(present).test)
    if len(chosen) < 2:
        raise ValueError(
            f"evaluation needs at least two test classes; found {len(chosen)} "
            f"among {len(present)} classes in the data"
        )
    return sorted(chosen)


def evaluate_folders(
    folders: list[Path],
    settings: Settings,
    *,
    model: str = "pretrained",
    split_file: Path | None = None,
    all_classes: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    images = labelled_images(folders)
    classes = choose_test_classes({label for _, label in images}, split_file, all_classes)
    wanted = set(classes)
    test_images = [(path, label) for path, label in images if label in wanted]

    embedding_model = load_model(model, settings)
    embedder = Embedder(
        embedding_model, device=settings.device, precision=settings.precision,
        batch_size=settings.batch_size, workers=settings.loader_workers,
    )
    vectors = np.zeros((len(test_images), embedding_model.dim), dtype=np.float32)
    ok = np.zeros(len(test_images), dtype=bool)
    skipped = []
    for batch in embedder.embed_paths([path for path, _ in test_images], progress=progress):
        vectors[batch.indices] = batch.vectors
        ok[batch.indices] = True
        for position, reason in batch.failures:
            skipped.append((str(test_images[position][0]), reason))
            log.warning("skipped %s: %s", test_images[position][0], reason)
    labels = np.array([label for _, label in test_images])[ok]
    vectors = vectors[ok]
    metrics = retrieval_metrics(vectors, labels)
    return EvaluationResult(
        model_version=embedding_model.version,
        metrics=metrics,
        test_classes=classes,
        data=[str(folder) for folder in folders],
        skipped=skipped,
        vectors=vectors,
        labels=labels,
    )

"""``lookalike evaluate``: a model on labelled folders, with the class-disjoint protocol.

The data is read as training reads it (:func:`indexer.training.data.read_labelled`:
one sub-folder per class, or a labelled manifest). Only the test classes are
embedded: with a split file, its ``test`` classes; with ``all_classes``, every class
found (a folder of products the model has never seen); otherwise the second half of
the sorted classes. Every test image then queries all the other test images; the
metrics are :mod:`indexer.model.evaluate`'s, as for a training run's test classes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.config import Settings
from indexer.fsutil import atomic_write_text
from indexer.model.embed import Embedder
from indexer.model.evaluate import RetrievalMetrics, evaluate_embedder
from indexer.model.modeldir import load_model
from indexer.model.quality import SplitRecord
from indexer.splits import ClassSplit
from indexer.training.data import read_labelled


@dataclass
class EvaluationResult:
    model_version: str
    metrics: RetrievalMetrics
    test_classes: list[str]
    data: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    split: SplitRecord | None = None  # what the metrics were measured on
    vectors: np.ndarray | None = None
    labels: np.ndarray | None = None
    paths: list[Path] = field(default_factory=list)  # the photo of each vector, row by row

    @property
    def slug(self) -> str:
        digest = hashlib.sha256("\n".join(self.test_classes).encode()).hexdigest()[:8]
        return f"{self.model_version}-{digest}"

    def save(self, path: Path) -> None:
        document = {
            "model_version": self.model_version,
            "metrics": self.metrics.as_dict(),
            "test_classes": self.test_classes,
            "split": self.split.as_dict() if self.split is not None else None,
            "data": self.data,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "created": datetime.now(UTC).isoformat(),
        }
        atomic_write_text(Path(path), json.dumps(document, indent=2) + "\n")

    def save_embeddings(self, path: Path) -> None:
        """The test embeddings and labels (``vectors``, ``labels``) as an .npz file."""
        np.savez(path, vectors=self.vectors, labels=self.labels)


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
    images = read_labelled(folders)
    classes = choose_test_classes({image.label for image in images}, split_file, all_classes)
    wanted = set(classes)
    test_images = [image for image in images if image.label in wanted]

    embedding_model = load_model(model, settings)
    embedder = Embedder(
        embedding_model, device=settings.device, precision=settings.precision,
        batch_size=settings.batch_size, workers=settings.loader_workers,
        runtime=settings.runtime, cache_dir=settings.runtime_cache_dir,
    )
    scored = evaluate_embedder(embedder, [image.path for image in test_images],
                               [image.label for image in test_images], progress=progress)
    return EvaluationResult(
        model_version=embedding_model.version,
        metrics=scored.metrics,
        test_classes=classes,
        data=[str(folder) for folder in folders],
        skipped=scored.skipped,
        split=SplitRecord.measured(
            None if all_classes else split_file, all_classes=all_classes,
            classes=scored.metrics.classes, images=scored.metrics.queries,
        ),
        vectors=scored.vectors,
        labels=scored.labels,
        paths=scored.paths,
    )

"""What a model's test metrics were measured on, and when they say too little to trust.

A MAP@R means something only with the split beside it: 41 unseen Grocery classes and
2,000 photos, or 3 classes of 10 photos. Training records the split in the card's
``metrics["test_split"]`` and ``lookalike evaluate`` in its saved JSON's ``split``:
the split file's name and the sha256 of its bytes (the same name can hold another
split), or how the classes were chosen without one, and how many classes and images
were searched. Cards written before this have the counts (``metrics["test"]``'s
``classes`` and ``queries``) but not the split: they read as "split not recorded".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.fsutil import sha256_file
from indexer.model.card import ModelCard

logger = logging.getLogger(__name__)

# Fewer unseen classes than this and a retrieval score mostly measures which classes
# happened to be drawn (the CUB-200 / SOP protocols test on 100 and 11,316 classes).
MIN_TEST_CLASSES = 10
HALVES = "halves"  # no split file: the second half of the sorted classes tested
ALL_CLASSES = "all-classes"  # evaluate --all-classes: every class found was tested


@dataclass(frozen=True)
class SplitRecord:
    """The split one set of test metrics was measured on; ``None``: not recorded."""

    name: str | None  # the split file's stem, HALVES or ALL_CLASSES
    file: str | None = None  # the split file's name (not its path: the card travels)
    sha256: str | None = None  # of the split file's bytes
    classes: int | None = None  # test classes searched
    images: int | None = None  # test images, each one a query

    @classmethod
    def measured(cls, split_file: Path | str | None, *, classes: int, images: int,
                 all_classes: bool = False) -> SplitRecord:
        if split_file is not None:
            path = Path(split_file)
            return cls(path.stem, path.name, sha256_file(path), classes, images)
        return cls(ALL_CLASSES if all_classes else HALVES, classes=classes, images=images)

    @classmethod
    def from_dict(cls, data: Any, metrics: Any = None) -> SplitRecord:
        """From a card's or an evaluation's record; counts fall back to the metrics'."""
        data = data if isinstance(data, dict) else {}
        metrics = metrics if isinstance(metrics, dict) else {}
        return cls(
            name=data.get("name"), file=data.get("file"), sha256=data.get("sha256"),
            classes=_count(data.get("classes", metrics.get("classes"))),
            images=_count(data.get("images", metrics.get("queries"))),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "sha256": self.sha256,
                "classes": self.classes, "images": self.images}

    def describe(self) -> str:
        """E.g. ``class_split.csv (sha256 1f0e9a2b), 41 classes, 2,031 images``."""
        counts = [f"{n:,} {what}" for n, what in ((self.classes, "classes"),
                                                  (self.images, "images")) if n is not None]
        return ", ".join([self.where(), *counts])

    def where(self) -> str:
        """Which split: the file and its hash, or how the classes were chosen."""
        if self.file:
            where = f"{self.file} (sha256 {self.sha256[:8]})" if self.sha256 else self.file
        elif self.name == HALVES:
            where = "no split file: second half of the sorted classes"
        elif self.name == ALL_CLASSES:
            where = "every class of the data (--all-classes)"
        else:
            where = "split not recorded"
        return where


@dataclass(frozen=True)
class Measurement:
    """One set of test metrics and its split: a card's own, or a saved evaluation."""

    metrics: dict[str, Any]
    split: SplitRecord
    source: str  # "card", or the evaluation file's name

    def figures(self) -> str:
        return (f"R@1 {self.metrics['recall_at_1']:.1f}  "
                f"MAP@R {self.metrics['map_at_r']:.1f}")


def card_measurement(card: ModelCard) -> Measurement | None:
    """The test metrics training recorded in the card, if any."""
    test = (card.metrics or {}).get("test")
    if not isinstance(test, dict) or not _has_figures(test):
        return None
    return Measurement(test, SplitRecord.from_dict(card.metrics.get("test_split"), test), "card")


def saved_evaluations(directory: Path) -> dict[str, list[Measurement]]:
    """Every evaluation ``lookalike evaluate`` saved in ``directory``, by model version,
    newest first. Unreadable files are skipped with a log line, never fatal."""
    found: dict[str, list[tuple[str, Measurement]]] = {}
    for path in sorted(Path(directory).glob("*.json")) if Path(directory).is_dir() else []:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            metrics, version = document["metrics"], document["model_version"]
            if not _has_figures(metrics):
                raise ValueError("no recall_at_1 / map_at_r")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("skipping evaluation %s: %s", path, exc)
            continue
        measurement = Measurement(metrics, SplitRecord.from_dict(document.get("split"), metrics),
                                  path.name)
        found.setdefault(version, []).append((str(document.get("created", "")), measurement))
    return {version: [m for _, m in sorted(pairs, key=lambda p: p[0], reverse=True)]
            for version, pairs in found.items()}


def quality_warnings(name: str, measurements: list[Measurement]) -> list[str]:
    """Why ``name``'s metrics may not be worth much; empty when one measurement is solid."""
    how = f"measure it with `lookalike evaluate DATA --model {name}`"
    if not measurements:
        return [f"{name} has no test metrics: its quality on unseen products is unknown; {how}"]
    known = [m for m in measurements if m.split.classes is not None]
    if not known:
        return [f"{name}'s test metrics do not say how many classes they were measured on; "
                f"{how}"]
    widest = max(known, key=lambda m: m.split.classes)
    if widest.split.classes < MIN_TEST_CLASSES:
        images = f", {widest.split.images:,} images" if widest.split.images is not None else ""
        return [f"{name} was evaluated on only {widest.split.classes} test classes "
                f"({widest.split.where()}{images}): fewer than {MIN_TEST_CLASSES} unseen "
                f"classes say little about products it never saw; {how} on more classes"]
    return []


def _has_figures(metrics: Any) -> bool:
    return isinstance(metrics, dict) and all(
        isinstance(metrics.get(k), int | float) for k in ("recall_at_1", "map_at_r"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

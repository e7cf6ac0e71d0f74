"""Labelled training data: which images train, which validate, which test.

Classes are split, never images (the class-disjoint protocol of CUB-200, Cars196 and
Stanford Online Products): a split file names the train and test classes, or by
default the first half of the sorted classes train and the second half test. A
validation part is carved from the training classes, again by class, so the epoch
kept is the one that generalises best to classes it did not train on.

Every image is decoded once up front: a corrupt photo is skipped and reported here,
not discovered in the middle of an epoch. A class left with fewer than two images
cannot give a positive pair and is skipped too, with the reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.images import ImageRejected
from indexer.model.device import usable_cores
from indexer.model.preprocess import Preprocessor
from indexer.sources import is_manifest, iter_folder, read_manifest
from indexer.splits import ClassSplit

log = logging.getLogger(__name__)

MIN_IMAGES_PER_CLASS = 2


class TrainingDataError(ValueError):
    """The data cannot train a model; the message says why."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str


@dataclass
class TrainingData:
    """The images of each part, plus what was skipped and a fingerprint of it all."""

    train: list[LabelledImage]
    validation: list[LabelledImage]
    test: list[LabelledImage]
    sources: list[str]
    split_file: str | None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path or class, reason)

    @property
    def train_classes(self) -> list[str]:
        return sorted({image.label for image in self.train})

    @property
    def validation_classes(self) -> list[str]:
        return sorted({image.label for image in self.validation})

    @property
    def test_classes(self) -> list[str]:
        return sorted({image.label for image in self.test})

    def fingerprint(self) -> str:
        """sha256 of every used file's path, size and class, per part: equal data, equal hash."""
        digest = hashlib.sha256()
        for part, images in (("train", self.train), ("validation", self.validation),
                             ("test", self.test)):
            for image in sorted(images, key=lambda i: str(i.path)):
                size = image.path.stat().st_size
                digest.update(f"{part}\t{image.label}\t{image.path.name}\t{size}\n".encode())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        """For the model card: where the data came from, its fingerprint and the split."""
        return {
            "sources": self.sources,
            "fingerprint": self.fingerprint(),
            "split_file": self.split_file,
            "images": {"train": len(self.train), "validation": len(self.validation),
                       "test": len(self.test)},
            "classes": {"train": self.train_classes, "validation": self.validation_classes,
                        "test": self.test_classes},
            "skipped": [{"what": what, "reason": reason} for what, reason in self.skipped],
        }


def read_labelled(sources: Sequence[Path]) -> list[LabelledImage]:
    """Every labelled image under the folders (class = sub-folder) or in the manifests."""
    found: list[LabelledImage] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            records = list(iter_folder(source))
        elif source.is_file() and is_manifest(source):
            records = read_manifest(source)
        elif source.exists():
            raise TrainingDataError(f"{source}: not a folder or a .csv/.jsonl manifest")
        else:
            raise TrainingDataError(f"{source}: no such folder or manifest")
        for record in records:
            if record.path is None:
                raise TrainingDataError(
                    f"{source}: {record.url} is a URL; training and evaluation read local files "
                    "(ingest the manifest first, or give local paths)"
                )
            if not record.label:
                raise TrainingDataError(
                    f"{record.path}: no class; put images in one sub-folder per class "
                    "or give a label column in the manifest"
                )
            found.append(LabelledImage(Path(record.path), record.label))
    if not found:
        raise TrainingDataError(f"no images found in {', '.join(map(str, sources))}")
    return found


def decode_check(
    images: Sequence[LabelledImage], preprocessor: Preprocessor, workers: int | None = None
) -> tuple[list[LabelledImage], list[tuple[str, str]]]:
    """(readable images, [(path, reason)] for the rest), in input order."""

    def check(image: LabelledImage) -> str | None:
        try:
            preprocessor.open(image.path)
        except ImageRejected as exc:
            return exc.reason
        return None

    with ThreadPoolExecutor(workers or usable_cores()) as pool:
        reasons = list(pool.map(check, images))
    good = [image for image, reason in zip(images, reasons, strict=True) if reason is None]
    bad = [(str(image.path), reason) for image, reason in zip(images, reasons, strict=True)
           if reason is not None]
    for path, reason in bad:
        log.warning("skipping %s: %s", path, reason)
    return good, bad


def validation_classes(train_classes: Sequence[str], fraction: float) -> list[str]:
    """Every k-th sorted training class, k = round(1 / fraction): the same for every seed,
    so runs with different seeds train on the same classes."""
    if fraction <= 0:
        return []
    ordered = sorted(train_classes)
    count = max(1, round(len(ordered) * fraction))
    step = len(ordered) / count
    return [ordered[int(step * i + step / 2)] for i in range(count)]


def prepare_training_data(
    sources: Sequence[Path],
    *,
    preprocessor: Preprocessor,
    split_file: Path | None = None,
    validation_fraction: float = 0.2,
) -> TrainingData:
    """Read, decode-check and split the data; raises TrainingDataError when it cannot train."""
    if not 0 <= validation_fraction < 1:
        raise TrainingDataError(f"validation fraction must be in [0, 1); got {validation_fraction}")
    labelled = read_labelled(sources)
    present = {image.label for image in labelled}
    if split_file is not None:
        split = ClassSplit.from_csv(split_file)
        split.check_against(present)  # SplitError names the missing classes
    if len(present) < 2:
        raise TrainingDataError(
            f"found {len(present)} class ({', '.join(sorted(present))}); metric learning "
            "needs at least two classes to train on and two more to test on"
        )
    if split_file is None:
        split = ClassSplit.halves(present)

    good, skipped = decode_check(labelled, preprocessor)
    counts = Counter(image.label for image in good)
    too_few = sorted(label for label in present if counts[label] < MIN_IMAGES_PER_CLASS)
    for label in too_few:
        reason = (f"class has {counts[label]} readable image(s); at least "
                  f"{MIN_IMAGES_PER_CLASS} are needed to form a positive pair")
        skipped.append((f"class {label}", reason))
        log.warning("skipping class %s: %s", label, reason)
    usable = {label for label in present if counts[label] >= MIN_IMAGES_PER_CLASS}

    train_classes = sorted(split.train & usable)
    test_classes = sorted(split.test & usable)
    held_out = set(validation_classes(train_classes, validation_fraction))
    if len(held_out) < 2:
        held_out = set()  # one class cannot be a retrieval benchmark
    fit_classes = [label for label in train_classes if label not in held_out]
    if len(fit_classes) < 2:
        raise TrainingDataError(
            f"{len(fit_classes)} usable training class(es) after the split and skips; "
            "training needs at least two classes with two or more images each"
        )
    if len(test_classes) < 2:
        raise TrainingDataError(
            f"{len(test_classes)} usable test class(es); the class-disjoint evaluation "
            "needs at least two classes the model does not train on"
        )
    fit, test = set(fit_classes), set(test_classes)
    return TrainingData(
        train=[image for image in good if image.label in fit],
        validation=[image for image in good if image.label in held_out],
        test=[image for image in good if image.label in test],
        sources=[str(Path(source).resolve()) for source in sources],
        split_file=str(Path(split_file).resolve()) if split_file else None,
        skipped=skipped,
    )

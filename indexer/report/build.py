"""Write the report of one evaluation into a directory: index.html, its PNGs, report.json."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.config import Settings
from indexer.evaluation import EvaluationResult
from indexer.fsutil import atomic_write_text
from indexer.maps.layout import compute_layout
from indexer.model.evaluate import rank
from indexer.report.confusion import confused_pairs, example_pairs, most_confused_with
from indexer.report.figures import class_colours, render_class_map, render_pair
from indexer.report.page import PairSection, ReportPage, render_html
from indexer.report.per_class import per_class_scores

log = logging.getLogger(__name__)

PAGE = "index.html"
MAP_PNG = "map.png"
DATA_JSON = "report.json"
PAIRS_DIR = "pairs"


class ReportError(ValueError):
    """The report cannot be written where it was asked for, or from what it was given."""


def prepare_directory(directory: Path) -> Path:
    """Create ``directory`` (and its parents), or say why it cannot be the report's."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ReportError(f"{directory} is a file, not a folder for the report")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PAIRS_DIR).mkdir(exist_ok=True)
    except OSError as error:
        raise ReportError(f"cannot create the report folder {directory}: "
                          f"{error.strerror or error}") from None
    return directory


def write_report(
    result: EvaluationResult,
    directory: Path,
    settings: Settings,
    *,
    pairs: int = 8,
    examples: int = 3,
    map_size: int = 1400,
) -> Path:
    """The quality report of ``result`` in ``directory``; returns the page's path.

    Needs the evaluation's vectors, labels and photo paths (row by row). The map is
    laid out with the catalogue map's t-SNE (:func:`indexer.maps.layout.compute_layout`,
    the ``map_perplexity`` and ``map_seed`` settings).
    """
    vectors, labels, paths = result.vectors, result.labels, result.paths
    if vectors is None or labels is None or len(paths) != len(vectors):
        raise ReportError("the evaluation kept no vectors, labels and photo paths to report on")
    directory = prepare_directory(directory)
    labels = np.asarray([str(label) for label in labels])
    ranking = rank(vectors, labels)
    classes = per_class_scores(ranking)
    colours = class_colours(list(labels))
    sections = []
    for number, pair in enumerate(confused_pairs(ranking, pairs), 1):
        shown = example_pairs(vectors, labels, pair.first, pair.second, examples)
        name = f"{PAIRS_DIR}/pair-{number:02d}.png"
        render_pair(pair, shown, paths, colours, directory / name,
                    max_pixels=settings.max_image_pixels)
        sections.append(PairSection(pair, name, len(shown)))
    layout = compute_layout(vectors, clusters=len(ranking.class_names),
                            perplexity=settings.map_perplexity, seed=settings.map_seed)
    render_class_map(layout.xy, labels, directory / MAP_PNG, size=map_size,
                     title=f"{len(labels)} photos of {len(classes)} classes  ·  "
                           f"model {result.model_version}")  # fmt: skip
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = ReportPage(
        model_version=result.model_version, data=result.data, created=created,
        metrics=result.metrics, classes=classes, most_confused_with=most_confused_with(ranking),
        pairs=sections, map_image=MAP_PNG, map_method=layout.method, skipped=result.skipped,
    )  # fmt: skip
    atomic_write_text(directory / DATA_JSON, json.dumps({
        "model_version": result.model_version,
        "data": result.data,
        "created": created,
        "metrics": result.metrics.as_dict(),
        "classes": [scores.as_dict() for scores in classes],
        "confused_pairs": [dict(section.pair.as_dict(), image=section.image)
                           for section in sections],
        "map": {"image": MAP_PNG, "method": layout.method},
        "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
    }, indent=2) + "\n")  # fmt: skip
    # The page last: a page on disk means its pictures are there.
    atomic_write_text(directory / PAGE, render_html(page))
    log.info("report of %d classes written to %s", len(classes), directory)
    return directory / PAGE

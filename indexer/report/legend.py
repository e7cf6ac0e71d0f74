"""Where the class names go on the map: at each class's centre, nudged apart where they collide.

A class's name is written at the mean 2-D position of its photos (the centre of
its island on the t-SNE map). When two centres lie so close that their names
would overlap, the later name (classes are placed largest first) moves up or
down in steps of a line until it is clear, and a thin line ties it to its centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels

MAX_NUDGES = 12  # lines up and down a name may move before it stays where it collides


@dataclass(frozen=True)
class ClassCentre:
    name: str
    x: float  # the mean of the class's map positions, in the map's [0, 1] units
    y: float
    size: int


def class_centres(xy: np.ndarray, labels: np.ndarray) -> list[ClassCentre]:
    """The mean map position of each class (sorted by name)."""
    xy = np.asarray(xy, dtype=np.float64)
    labels = np.asarray(labels)
    if len(xy) != len(labels):
        raise ValueError(f"{len(xy)} map positions but {len(labels)} labels")
    centres = []
    for name in np.unique(labels):
        mine = xy[labels == name]
        centres.append(ClassCentre(str(name), float(mine[:, 0].mean()), float(mine[:, 1].mean()),
                                   len(mine)))
    return centres


def place_labels(
    anchors: list[tuple[float, float]], sizes: list[tuple[float, float]], bounds: Box
) -> list[tuple[float, float]]:
    """The centre pixel of each label: its anchor, unless that overlaps a label placed before.

    ``anchors`` are the centres wanted, ``sizes`` each label's (width, height).
    Labels are placed in the order given; each is kept inside ``bounds``.
    """
    placed: list[Box] = []
    positions = []
    for (x, y), (width, height) in zip(anchors, sizes, strict=True):
        x = _clamp(x, bounds[0] + width / 2, bounds[2] - width / 2)
        chosen = None
        for step in _nudges():
            candidate_y = _clamp(y + step * height, bounds[1] + height / 2,
                                 bounds[3] - height / 2)
            box = (x - width / 2, candidate_y - height / 2, x + width / 2,
                   candidate_y + height / 2)
            if not any(_overlap(box, other) for other in placed):
                chosen = (x, candidate_y)
                break
        if chosen is None:  # crowded all round: at its own centre after all
            chosen = (x, _clamp(y, bounds[1] + height / 2, bounds[3] - height / 2))
        positions.append(chosen)
        placed.append((chosen[0] - width / 2, chosen[1] - height / 2, chosen[0] + width / 2,
                       chosen[1] + height / 2))
    return positions


def _nudges():
    yield 0
    for step in range(1, MAX_NUDGES + 1):
        yield -step
        yield step


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clamp(value: float, low: float, high: float) -> float:
    return value if low > high else min(max(value, low), high)

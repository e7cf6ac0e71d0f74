"""Names for how much of a backbone trains (no torch import: the CLI reads these)."""

from __future__ import annotations

from typing import Literal

TrainStages = int | Literal["all"]
ALL = "all"


class StagesError(ValueError):
    """A ``train_stages`` value the backbone cannot be split at."""


def parse_train_stages(value: str | int) -> TrainStages:
    if value == ALL:
        return ALL
    try:
        stages = int(value)
    except (TypeError, ValueError):
        raise StagesError(f"train stages must be a number or 'all'; got {value!r}") from None
    if stages < 0:
        raise StagesError(f"train stages must be 0 or more (or 'all'); got {stages}")
    return stages

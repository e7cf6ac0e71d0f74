"""Entry-point plugins: how the shells add to the core without the core importing them.

A shell declares, in ``pyproject.toml``, what it adds under a named group
(``lookalike.commands``: command-line commands; ``lookalike.job_queue``: where
``--background`` work goes; ``lookalike.web``: blueprints served with the API),
and the core finds it through :mod:`importlib.metadata`, as Flask's CLI finds
the ``flask.commands`` group and pytest its plugins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The group's entry points, one per name (the first found wins), sorted by name.

    One name can be found twice when the same distribution lies on the path
    twice (an editable install beside a stale copy): load it once.
    """
    chosen: dict[str, metadata.EntryPoint] = {}
    for point in metadata.entry_points(group=group):
        chosen.setdefault(point.name, point)
    return [chosen[name] for name in sorted(chosen)]


@dataclass(frozen=True)
class LoadFailure:
    """An entry point that would not load: its name, target and the error, for one line."""

    name: str
    value: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.name!r} ({self.value}): {type(self.error).__name__}: {self.error}"


def load_all(
    points: Iterable[metadata.EntryPoint],
) -> tuple[list[tuple[metadata.EntryPoint, Any]], list[LoadFailure]]:
    """Load each entry point; a broken one is reported, never fatal for the others."""
    loaded, failed = [], []
    for point in points:
        try:
            loaded.append((point, point.load()))
        except Exception as error:  # an import error, a missing attribute, a plugin's bug
            failed.append(LoadFailure(point.name, point.value, error))
    return loaded, failed

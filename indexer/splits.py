"""Class-disjoint splits: which classes train a model and which only test it.

A split file is a CSV with a class column (``class_name``, ``class`` or ``label``)
and a split column (``half`` or ``split``) whose values are ``train`` or ``test``.
The Grocery Store dataset's ``class_split.csv`` has exactly this shape. Without a
file, the first half of the sorted classes train and the second half test, as in
the CUB-200 / Stanford Online Products protocol.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLASS_COLUMNS = ("class_name", "class", "label")
SPLIT_COLUMNS = ("half", "split")
SPLIT_VALUES = ("train", "test")


class SplitError(ValueError):
    """A split file that cannot be used; the message says why."""


@dataclass(frozen=True)
class ClassSplit:
    train: frozenset[str]
    test: frozenset[str]

    @classmethod
    def halves(cls, classes: Iterable[str]) -> ClassSplit:
        ordered = sorted(set(classes))
        middle = len(ordered) // 2
        return cls(frozenset(ordered[:middle]), frozenset(ordered[middle:]))

    @classmethod
    def from_csv(cls, path: Path) -> ClassSplit:
        path = Path(path)
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise SplitError(f"cannot read split file {path}: {error}") from error
        if not rows:
            raise SplitError(f"split file {path} has no rows")
        header = [name.strip() for name in rows[0]]
        class_column = next((c for c in CLASS_COLUMNS if c in header), None)
        split_column = next((c for c in SPLIT_COLUMNS if c in header), None)
        if class_column is None or split_column is None:
            raise SplitError(
                f"split file {path} needs a class column ({' or '.join(CLASS_COLUMNS)}) and "
                f"a split column ({' or '.join(SPLIT_COLUMNS)}); found: {', '.join(header)}"
            )
        groups: dict[str, set[str]] = {value: set() for value in SPLIT_VALUES}
        for line, row in enumerate(rows, start=2):
            name = (row.get(class_column) or "").strip()
            value = (row.get(split_column) or "").strip().lower()
            if not name or value not in groups:
                raise SplitError(
                    f"{path}:{line}: expected a class name and one of "
                    f"{'/'.join(SPLIT_VALUES)}, got {name!r}, {value!r}"
                )
            groups[value].add(name)
        both = groups["train"] & groups["test"]
        if both:
            raise SplitError(f"classes in both train and test: {', '.join(sorted(both))}")
        return cls(frozenset(groups["train"]), frozenset(groups["test"]))

    def check_against(self, present: Iterable[str]) -> None:
        """Refuse a split that names classes the data does not have."""
        missing = (self.train | self.test) - set(present)
        if missing:
            shown = ", ".join(sorted(missing)[:10])
            more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
            raise SplitError(f"the split names classes not found in the data: {shown}{more}")

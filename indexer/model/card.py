"""The model card: what a model directory holds, in ``card.json``.

Index manifests and vector stores refer to a model by its ``version`` string, so the
card is what makes a vector traceable to the weights, preprocessing and training run
that produced it. It is written last (after the weights), so a directory with a card
is complete; the card records the weights' sha256 so a damaged file refuses to load.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.fsutil import atomic_write_text

CARD_FILE = "card.json"
CARD_FORMAT = 1


class CardError(ValueError):
    """``card.json`` is missing, unreadable or incomplete."""


@dataclass
class ModelCard:
    """Everything needed to rebuild and trust a model; serialised to ``card.json``."""

    version: str  # referenced by vector stores and index manifests
    architecture: str  # timm model name of the backbone
    embedding_dim: int  # length of the output vectors
    pooled_dim: int  # backbone's pooled feature size (input of the head)
    head: str | None  # "linear", or None for the backbone's pooled features
    data_config: dict[str, Any]  # timm data config: input_size, interpolation, mean, std, crop
    weights_file: str | None = None  # name inside the directory; None: packaged weights
    weights_sha256: str | None = None
    loss: dict[str, Any] | str | None = None  # None for the pretrained backbone
    training_data: dict[str, Any] | str | None = None  # data fingerprint; None if untrained
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # trainer config, free form
    # Learned features blended with the pretrained ones: {"pretrained_weight": w,
    # "train_stages": k, "pretrained_dim": d}; None for a plain head.
    blend: dict[str, Any] | None = None
    normalized: bool = True  # outputs are L2-normalised
    created: str = field(default_factory=lambda: utc_now())
    format: int = CARD_FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=_jsonable)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "card") -> ModelCard:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise CardError(f"{source} lacks {', '.join(missing)}")
        if data.get("format", CARD_FORMAT) > CARD_FORMAT:
            raise CardError(
                f"{source} has format {data['format']}; this version reads up to {CARD_FORMAT}"
            )
        card = cls(**{k: v for k, v in data.items() if k in names})
        card.data_config = normalize_data_config(card.data_config)
        return card


def read_card(directory: Path) -> ModelCard:
    path = Path(directory) / CARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CardError(f"{directory} is not a model directory: no {CARD_FILE}") from exc
    except (OSError, ValueError) as exc:
        raise CardError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CardError(f"{path} is not a JSON object")
    return ModelCard.from_dict(data, source=str(path))


def write_card(directory: Path, card: ModelCard) -> None:
    """Atomically (temp file, fsync, rename): a reader sees the old card or the new one."""
    atomic_write_text(Path(directory) / CARD_FILE, card.to_json() + "\n")


def normalize_data_config(config: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; timm's transforms expect tuples back."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    if hasattr(value, "item"):  # numpy / torch scalars in metrics
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

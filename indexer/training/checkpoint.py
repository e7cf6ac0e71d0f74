"""Training checkpoints: written atomically after every epoch, checked before resuming.

A checkpoint holds everything a resumed run needs to continue as if never stopped:
model, head and loss parameters, both optimizers, the best epoch so far and the
history. The random streams need no saving: every epoch's batches, views and dropout
are seeded from (seed, epoch). Writing goes through a temporary file, fsync and
rename, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from indexer.fsutil import atomic_write_bytes

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# What must match for a checkpoint to continue this run; anything else may change
# (device, workers, epochs to go on longer).
IDENTITY_FIELDS = ("backbone", "train_stages", "dim", "loss", "loss_params", "views",
                   "weights", "batch_size", "m_per_class", "seed", "pretrained_weight")


class CheckpointError(ValueError):
    """A checkpoint that cannot continue this run; the message says what differs."""


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    path = Path(run_dir) / CHECKPOINT_FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: no {CHECKPOINT_FILE} in {run_dir}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a Lookalike training checkpoint")
    return state


def check_compatible(state: dict[str, Any], config: dict[str, Any], fingerprint: str) -> None:
    """Refuse to resume a run with another architecture, loss, data or sampling."""
    saved = state["config"]
    differs = [
        f"{name}: checkpoint {saved.get(name)!r}, this run {config.get(name)!r}"
        for name in IDENTITY_FIELDS
        if saved.get(name) != config.get(name)
    ]
    if differs:
        raise CheckpointError(
            "the checkpoint was written by a different training setup and cannot be "
            "resumed with this one (" + "; ".join(differs) + "); start a new run or "
            "resume with the original settings"
        )
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            "the checkpoint was trained on different data (fingerprint "
            f"{str(state.get('fingerprint'))[:12]}…, this data {fingerprint[:12]}…)"
        )

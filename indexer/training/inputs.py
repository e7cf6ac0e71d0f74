"""What the trained tail eats: cached trunk outputs, or freshly decoded views.

With a frozen trunk (the default), the trunk's output for ``views`` fixed views of each
photo is computed once and kept in a float16 file in the run directory
(:class:`CachedInputs`); a step then costs only the tail. Resuming reuses the file. When
everything trains (``train_stages='all'``), each step decodes and augments its photos
anew (:class:`LiveInputs`). Either way, which view an image shows in an epoch is a
pure function of (seed, epoch, image).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from indexer.fsutil import atomic_write_text
from indexer.model.loading import prefetched
from indexer.model.preprocess import PixelNormalizer, Preprocessor
from indexer.model.runtime import Runtime
from indexer.training.augment import make_view, photo_views, view_rng
from indexer.training.data import LabelledImage

log = logging.getLogger(__name__)


def load_views(images: Sequence[LabelledImage], positions: Sequence[int], views: Sequence[int],
               preprocessor: Preprocessor, seed: int, salt: int) -> torch.Tensor:
    """uint8 (n, H, W, 3) pixels: image ``positions[i]`` as view ``views[i]``."""
    out = []
    for position, view in zip(positions, views, strict=True):
        image = preprocessor.open(images[position].path)
        rng = view_rng(seed, salt, int(position), int(view))
        out.append(make_view(image, preprocessor, int(view), rng))
    return torch.stack(out)


def all_views(images: Sequence[LabelledImage], positions: Sequence[int], views: int,
              preprocessor: Preprocessor, seed: int, salt: int) -> list[torch.Tensor]:
    """``views`` uint8 (n, H, W, 3) batches of ``positions``, each photo decoded once:
    the same pixels as :func:`load_views` view by view."""
    by_view: list[list[torch.Tensor]] = [[] for _ in range(views)]
    for position in positions:
        image = preprocessor.open(images[position].path)
        made = photo_views(image, preprocessor, list(range(views)),
                           lambda view, p=int(position): view_rng(seed, salt, p, view))
        for view, pixels in enumerate(made):
            by_view[view].append(pixels)
    return [torch.stack(batch) for batch in by_view]


class CachedInputs:
    """Trunk outputs for ``views`` views of every image, in ``path`` (float16, memory-mapped)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @property
    def views(self) -> int:
        return self.array.shape[1]

    @classmethod
    def open_or_build(
        cls, path: Path, key: dict, images: Sequence[LabelledImage], views: int,
        trunk: Runtime, preprocessor: Preprocessor, *, seed: int, batch_size: int,
        workers: int, progress: bool, label: str,
    ) -> CachedInputs:
        """Reuse ``path`` if its key matches, else run ``trunk`` (a runtime of the frozen
        trunk: uint8 pixels in, feature maps out) over every view of every image."""
        key_path = path.with_suffix(".json")
        if path.exists() and key_path.exists():
            try:
                if json.loads(key_path.read_text()) == key:
                    log.info("reusing cached %s inputs from %s", label, path)
                    return cls(np.load(path, mmap_mode="r"))
            except (OSError, ValueError):
                pass
        key_path.unlink(missing_ok=True)  # the key goes last: no key, no trusted cache
        array = None
        total = len(images) * views
        bar = tqdm(total=total, unit="img", desc=f"caching {label} inputs", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True)
        # Each photo is decoded once for all its views (a decode is ~a third of a view's
        # CPU cost, and the fast runtime leaves the loader little time).
        def load(start):
            if workers > 0:  # a loader thread: one torch thread, the runtime has the cores
                torch.set_num_threads(1)
            positions = list(range(start, min(start + batch_size, len(images))))
            return start, all_views(images, positions, views, preprocessor, seed, salt=0)

        def view_batches() -> Iterator[tuple[int, int, torch.Tensor]]:
            starts = range(0, len(images), batch_size)
            for start, by_view in prefetched(starts, load, workers, name="train-load"):
                for view, pixels in enumerate(by_view):
                    yield start, view, pixels

        # run_many: the runtime starts the next views before these features are stored.
        for (start, view, _), features in trunk.run_many(view_batches(), lambda b: b[2]):
            features = features.astype(np.float16)
            if array is None:
                shape = (len(images), views, *features.shape[1:])
                array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                                  shape=shape)
            array[start : start + len(features), view] = features
            bar.update(len(features))
        bar.close()
        array.flush()
        atomic_write_text(key_path, json.dumps(key, sort_keys=True))
        return cls(np.load(path, mmap_mode="r"))

    def batch(self, positions: np.ndarray, epoch: int, seed: int, device: torch.device,
              ) -> torch.Tensor:
        chosen = view_rng(seed, 1, epoch).integers(0, self.views, size=len(self.array))
        block = self.array[np.sort(positions)]  # memmap reads in order
        order = np.argsort(np.argsort(positions))
        rows = torch.from_numpy(np.ascontiguousarray(block[order, chosen[positions]]))
        return self._to_device(rows, device)

    def fixed(self, positions: np.ndarray, device: torch.device) -> torch.Tensor:
        """View 0 (the evaluation transform) of ``positions``."""
        rows = torch.from_numpy(np.ascontiguousarray(self.array[positions, 0]))
        return self._to_device(rows, device)

    @staticmethod
    def _to_device(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = rows.to(device).float()
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class LiveInputs:
    """Decode and augment every step; the whole backbone runs (and trains) each time."""

    def __init__(self, images: Sequence[LabelledImage], preprocessor: Preprocessor,
                 normalize: PixelNormalizer, views: int) -> None:
        self.images = images
        self.preprocessor = preprocessor
        self.normalize = normalize
        self.views = views  # 2 fixed views (plain, mirrored) + random crops beyond

    def load(self, positions: np.ndarray, epoch: int, seed: int) -> torch.Tensor:
        rng = view_rng(seed, 1, epoch)
        chosen = rng.integers(0, max(self.views, 3), size=len(self.images))
        # Views ≥ 2 are random crops: give each epoch its own (the cache cannot).
        views = [int(chosen[p]) if chosen[p] < 2 else 2 + epoch for p in positions]
        return load_views(self.images, list(positions), views, self.preprocessor, seed, salt=2)

    def fixed_pixels(self, positions: np.ndarray) -> torch.Tensor:
        return load_views(self.images, list(positions), [0] * len(positions),
                          self.preprocessor, 0, salt=0)

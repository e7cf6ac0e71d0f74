"""Loaders that decode the next batches while the model runs on this one.

Two kinds, chosen by :func:`choose_loader`: a thread pool (Pillow and torch release the
GIL while decoding and resizing) or torch ``DataLoader`` worker processes. Either way
batches come back in input order, as :class:`LoadedBatch` (stacked uint8 pixels plus
the positions that failed, with their reasons): a bad image never loses the batch.
:func:`prefetched` is the thread pipeline itself, shared with the trainer's loaders.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch

from indexer.images import ImageRejected
from indexer.model.preprocess import Preprocessor

logger = logging.getLogger(__name__)

LoaderKind = Literal["auto", "process", "thread"]
LOADERS = ("auto", "process", "thread")

Job = TypeVar("Job")
Result = TypeVar("Result")


def prefetched(jobs: Iterable[Job], load: Callable[[Job], Result], workers: int,
               *, name: str = "load") -> Iterator[Result]:
    """``load(job)`` for each job, results in order, on ``workers`` threads.

    ``workers + 1`` jobs stay in flight, so a thread that finishes while the consumer
    works finds the next job waiting. 0 workers: each job loads in the calling thread.
    """
    if workers == 0:
        yield from map(load, jobs)
        return
    jobs = iter(jobs)
    pending: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        pending.extend(pool.submit(load, job) for job in islice(jobs, workers + 1))
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(load, job) for job in islice(jobs, 1))
            yield result


def choose_loader(loader: str, device: torch.device) -> str:
    """'auto': threads on CPU, processes on CUDA.

    On CPU one loader worker suffices and threads measured as fast as a worker process
    or faster (no start-up per call, no pickling of pixels; Pillow and torch both
    release the GIL). A GPU needs many decoders, and many threads would contend for
    the GIL. A daemonic process (a worker of some process pools) may not start
    children, so it always gets threads.
    """
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {', '.join(LOADERS)}; got {loader!r}")
    daemonic = multiprocessing.current_process().daemon
    if loader == "process" and daemonic:
        logger.info("embedder: daemonic process, using a thread loader instead")
    if loader == "auto":
        loader = "process" if device.type == "cuda" else "thread"
    return "thread" if daemonic else loader


@dataclass
class LoadedBatch:
    """What a loader hands the model: stacked uint8 pixels plus bookkeeping."""

    indices: np.ndarray  # positions in the input sequence
    pixels: torch.Tensor | None  # (n, H, W, 3) uint8, None when every image failed
    failures: list[tuple[int, str]]  # (position, reason)

    def pin_memory(self) -> LoadedBatch:  # DataLoader(pin_memory=True) calls this
        if self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


def load_batches(paths: Sequence[Path], preprocessor: Preprocessor, *, batch_size: int,
                 workers: int, loader: str, pin_memory: bool) -> Iterator[LoadedBatch]:
    """Decode ``paths`` in batches of ``batch_size``, ``workers`` ahead (0: in this thread)."""
    if workers > 0 and loader == "process":
        yield from _process_batches(paths, preprocessor, batch_size, workers, pin_memory)
        return

    def load(start: int) -> LoadedBatch:
        stop = min(start + batch_size, len(paths))
        batch = _collate(_load_one(preprocessor, paths[i], i) for i in range(start, stop))
        return batch.pin_memory() if pin_memory and workers > 0 else batch

    yield from prefetched(range(0, len(paths), batch_size), load, workers, name="embed-load")


def _process_batches(paths: Sequence[Path], preprocessor: Preprocessor, batch_size: int,
                     workers: int, pin_memory: bool) -> Iterator[LoadedBatch]:
    # A loader lives for one call and is iterated once, so persistent_workers would
    # buy nothing; workers start by fork in ~10 ms each on Linux.
    yield from torch.utils.data.DataLoader(
        _PathDataset(list(paths), preprocessor),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        prefetch_factor=2,
    )



class _PathDataset(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], preprocessor: Preprocessor) -> None:
        self.paths = paths
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        return _load_one(self.preprocessor, self.paths[index], index)


def _load_one(
    preprocessor: Preprocessor, path: Path, index: int
) -> tuple[int, torch.Tensor | None, str | None]:
    try:
        return index, preprocessor.from_path(Path(path)), None
    except ImageRejected as exc:
        return index, None, exc.reason
    except Exception as exc:  # noqa: BLE001 - never lose the batch to one image
        logger.warning("unexpected error preprocessing %s", path, exc_info=True)
        return index, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(items: Iterable[tuple[int, torch.Tensor | None, str | None]]) -> LoadedBatch:
    indices, pixels, failures = [], [], []
    for index, tensor, reason in items:
        if tensor is None:
            failures.append((index, reason or "unknown error"))
        else:
            indices.append(index)
            pixels.append(tensor)
    return LoadedBatch(
        np.asarray(indices, dtype=np.int64),
        torch.stack(pixels) if pixels else None,
        failures,
    )

"""Which runtime, and which batch size, this machine likes: measured once, then remembered.

``auto`` opens every runtime that could run here (OpenVINO and ONNX Runtime on a CPU;
PyTorch and an ONNX Runtime GPU provider on CUDA), times each one's forward pass over
a ladder of batch sizes on random pixels, and keeps the fastest pair; the batch is the
smallest within 3% of that runtime's best (smaller batches start sooner and hold less
memory). A fixed ``batch_size`` skips the ladder. The result is stored in the runtime
cache under a key naming everything it depends on (model, device, CPU model, cores,
threads, precision, runtime versions), so the next process on this machine reuses it;
a result that no longer opens is measured again.

Timing is crude on purpose (a warm-up call, then calls until a quarter second has
passed, the ladder climbed twice and the better rate kept): ~10 s once per machine
and model, not a benchmark.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from indexer.fsutil import atomic_write_text
from indexer.locks import writer_flock
from indexer.model.device import usable_cores
from indexer.model.export import GraphRefused
from indexer.model.runtime import Runtime, RuntimeUnavailable, installed, open_runtime

log = logging.getLogger(__name__)

CPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
CUDA_BATCHES = (16, 32, 64, 128, 256, 512)
TIE = 0.97  # a smaller batch within 3% of the best is chosen
SECONDS_PER_SIZE = 0.25
CALIBRATION_FILE = "calibration.json"


@dataclass
class Selection:
    """The runtime to use, its batch size, and what the choice rests on."""

    runtime: Runtime
    batch_size: int
    reason: str
    rates: dict[str, dict[int, float]] = field(default_factory=dict)  # name → batch → img/s


def auto_candidates(device: torch.device) -> list[str]:
    """What ``auto`` measures here, in order of preference on a tie."""
    if device.type == "cuda":
        names = ["torch"]
        if installed("onnxruntime"):
            import onnxruntime

            if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
                names.append("onnxruntime")
        return names
    names = [name for name in ("openvino", "onnxruntime") if installed(name)]
    return names or ["torch"]


# How rates are measured; a change here makes earlier measurements stale.
METHOD = "run_many-v2"


def machine_key(device: torch.device, precision: str, threads: int, what: str) -> str:
    """Everything a measurement depends on, as one string."""
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = cpu_model()
    versions = ",".join(f"{name}={package_version(name)}" for name in RUNTIME_PACKAGES)
    return (f"{what}|{METHOD}|{device.type}|{hardware}|cores={usable_cores()}|"
            f"threads={threads}|{precision}|{versions}")


def select_runtime(
    requested: str, *, device: torch.device, precision: str, threads: int | None,
    torch_function: Callable[[], torch.nn.Module], graph: Callable, input_shape: Sequence[int],
    batch_size: int | None, cache_dir: Path | None, what: str,
) -> Selection:
    """The runtime for ``requested`` ('auto' or a name) and its batch size.

    A named runtime that cannot run here (not installed, graph refused) gives way to
    what 'auto' would choose among the others, with a warning naming the reason.
    """
    threads = threads or usable_cores()

    def opener(name: str) -> Runtime:
        return open_runtime(name, torch_function=torch_function, graph=graph, device=device,
                            precision=precision, threads=threads)

    excluded: list[str] = []
    if requested != "auto":
        try:
            runtime = opener(requested)
        except (RuntimeUnavailable, GraphRefused, OSError) as exc:
            log.warning("runtime %s unavailable, choosing another: %s", requested, exc)
            excluded.append(requested)
        else:
            batch = batch_size or _measured_batch(runtime, device, input_shape, cache_dir,
                                                 machine_key(device, precision, threads, what))
            return Selection(runtime, batch, f"{requested} as configured")
    candidates = [name for name in auto_candidates(device) if name not in excluded]
    candidates = candidates or ["torch"]
    key = machine_key(device, precision, threads, what) + f"|batch={batch_size or 'auto'}"
    cached = _read_cache(cache_dir).get(key)
    if cached and cached.get("runtime") in candidates:
        try:
            runtime = opener(cached["runtime"])
            return Selection(runtime, int(cached["batch_size"]), "measured earlier here",
                             {k: {int(b): r for b, r in v.items()}
                              for k, v in cached.get("rates", {}).items()})
        except (RuntimeUnavailable, GraphRefused, OSError) as exc:
            log.warning("runtime %s chosen earlier no longer opens: %s", cached["runtime"], exc)
    return _measure_and_choose(candidates, opener, device, input_shape, batch_size,
                               cache_dir, key)


def _measure_and_choose(candidates: list[str], opener: Callable[[str], Runtime],
                        device: torch.device, input_shape: Sequence[int],
                        batch_size: int | None, cache_dir: Path | None, key: str) -> Selection:
    opened: dict[str, Runtime] = {}
    for name in candidates:
        try:
            opened[name] = opener(name)
        except (RuntimeUnavailable, GraphRefused, OSError) as exc:
            log.warning("runtime %s skipped: %s", name, exc)
    if not opened:
        opened["torch"] = opener("torch")
    ladder = (batch_size,) if batch_size else _ladder(device)
    rates = {name: rate_ladder(runtime, input_shape, ladder) for name, runtime in opened.items()}
    best_name = max(rates, key=lambda name: max(rates[name].values()))
    batch = smallest_near_best(rates[best_name])
    summary = "; ".join(f"{name} " + ", ".join(f"b{b} {r:.0f}" for b, r in by_batch.items())
                        for name, by_batch in rates.items())
    log.info("runtime measured (img/s): %s → %s at batch %d", summary, best_name, batch)
    _write_cache(cache_dir, key, {"runtime": best_name, "batch_size": batch, "rates": rates,
                                  "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                            time.gmtime())})
    reason = "the only one here" if len(opened) == 1 else "measured fastest here"
    return Selection(opened[best_name], batch, reason, rates)


def _measured_batch(runtime: Runtime, device: torch.device, input_shape: Sequence[int],
                    cache_dir: Path | None, key: str) -> int:
    key = f"{key}|runtime={runtime.name}"
    cached = _read_cache(cache_dir).get(key)
    if cached:
        return int(cached["batch_size"])
    rates = rate_ladder(runtime, input_shape, _ladder(device))
    batch = smallest_near_best(rates)
    log.info("batch measured for %s (img/s): %s → %d", runtime.name, rates, batch)
    _write_cache(cache_dir, key, {"runtime": runtime.name, "batch_size": batch,
                                  "rates": {runtime.name: rates}})
    return batch


def _ladder(device: torch.device) -> tuple[int, ...]:
    return CUDA_BATCHES if device.type == "cuda" else CPU_BATCHES


def rate_ladder(runtime: Runtime, input_shape: Sequence[int],
                batches: Sequence[int]) -> dict[int, float]:
    """Images/s of ``runtime`` at each batch size, up the ladder until it clearly drops."""
    rng = np.random.default_rng(0)
    rates: dict[int, float] = {}
    worse = 0
    for batch in batches:
        pixels = rng.integers(0, 256, size=(batch, *input_shape), dtype=np.uint8)
        rates[batch] = forward_rate(runtime, pixels)
        worse = worse + 1 if rates[batch] < 0.9 * max(rates.values()) else 0
        if worse == 2:
            break
    # A second pass, best of the two per size: on shared cores one slow quarter second
    # otherwise decides the batch (batch 4 won one run here, batch 16 the next).
    for batch in list(rates):
        pixels = rng.integers(0, 256, size=(batch, *input_shape), dtype=np.uint8)
        rates[batch] = max(rates[batch], forward_rate(runtime, pixels))
    return rates


def forward_rate(runtime: Runtime, pixels: np.ndarray, seconds: float = SECONDS_PER_SIZE
                 ) -> float:
    """Images per second of ``runtime.run_many`` (the pipeline's path) on ``pixels``."""
    runtime.run(pixels)  # warm-up: first-call allocations, kernel choice
    calls, started = 0, time.perf_counter()

    def batches() -> Iterator[np.ndarray]:
        while calls < 2 or time.perf_counter() - started < seconds:
            yield pixels

    for _ in runtime.run_many(batches(), lambda batch: batch):
        calls += 1
    return calls * len(pixels) / (time.perf_counter() - started)


def smallest_near_best(rates: dict[int, float]) -> int:
    best = max(rates.values())
    return min(batch for batch, rate in rates.items() if rate >= TIE * best)


def _read_cache(cache_dir: Path | None) -> dict:
    if cache_dir is None:
        return _MEMORY
    try:
        return json.loads((cache_dir / CALIBRATION_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", cache_dir / CALIBRATION_FILE, exc)
        return {}


def _write_cache(cache_dir: Path | None, key: str, entry: dict) -> None:
    if cache_dir is None:
        _MEMORY[key] = json.loads(json.dumps(entry))
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with writer_flock(cache_dir / f".{CALIBRATION_FILE}.lock"):
            entries = _read_cache(cache_dir)
            entries[key] = entry
            atomic_write_text(cache_dir / CALIBRATION_FILE,
                              json.dumps(entries, indent=2, sort_keys=True) + "\n")
    except OSError as exc:  # a read-only cache: measure again next time, still run
        log.warning("could not remember the runtime measurement in %s: %s", cache_dir, exc)


_MEMORY: dict[str, dict] = {}  # without a cache directory: remembered for this process


RUNTIME_PACKAGES = ("torch", "onnxruntime", "openvino")


def cpu_model() -> str:
    """The CPU's model name (what a measurement here holds for)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"

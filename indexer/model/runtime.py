"""Inference runtimes: PyTorch, ONNX Runtime and OpenVINO behind one ``run(pixels)``.

Every runtime takes uint8 (n, H, W, 3) pixels and returns float32 outputs of one
function (:class:`~indexer.model.export.PixelFunction`): PyTorch runs the module
itself; ONNX Runtime and OpenVINO run its exported graph
(:func:`~indexer.model.export.ensure_graph`), and :func:`open_runtime` checks their
outputs for the graph's reference photos against PyTorch's before handing them out.

Measured on the 2-core development machine (AMD EPYC, AVX2; pooled Lite0 features):
PyTorch eager 46 img/s at batch 8, ONNX Runtime 113, OpenVINO 210; one image 19.3,
11 and 5.5 ms. Which is fastest depends on the CPU, so ``auto`` measures
(:mod:`indexer.model.calibrate`). A runtime that is not installed, or whose graph
fails its check, gives way to the next choice with the reason logged.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import importlib.util
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from indexer.config import RUNTIMES, RuntimeName  # noqa: F401 - re-exported
from indexer.model.device import autocast_context, usable_cores
from indexer.model.export import (
    GRAPH_MIN_COSINE,
    INPUT_NAME,
    ExportedGraph,
    GraphRefused,
    check_outputs,
    cosines,
)

log = logging.getLogger(__name__)

GRAPH_RUNTIMES = ("openvino", "onnxruntime")  # the ones that run an exported graph
# Reduced precision (bf16 / fp16) moves outputs by ~1e-3. A runtime at reduced precision
# must stay this close to PyTorch's fp32 outputs, or as close as PyTorch's own autocast
# at that precision, whichever is looser: that is what the machine ran before, and on
# a deep feature map (the training trunk) bf16 itself only reaches ~0.997.
REDUCED_MIN_COSINE = 0.999
AUTOCAST_SLACK = 0.0005

Item = TypeVar("Item")
Pixels = np.ndarray | torch.Tensor


class RuntimeUnavailable(RuntimeError):
    """A runtime that cannot run here (not installed, no such device); the reason."""


def installed(name: str) -> bool:
    """Whether the runtime's package imports (``torch`` always does)."""
    if name == "torch":
        return True
    module = {"openvino": "openvino", "onnxruntime": "onnxruntime"}[name]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, say
        return False


class Runtime:
    """One function on one runtime. ``run`` batches; ``run_one`` is the latency path."""

    name: str = "?"
    precision: str = "fp32"

    def run(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def run_one(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        """A single image (a search query): (1, H, W, 3) in, (1, ...) out."""
        return self.run(pixels)

    def run_many(self, items: Iterable[Item], pixels_of: Callable[[Item], Pixels | None]
                 ) -> Iterator[tuple[Item, np.ndarray | None]]:
        """Each item with the outputs for its pixels (None where it has none), in order.

        The pipeline's path: a runtime that can keep several batches in flight
        (OpenVINO) starts the next before the last one's outputs are taken.
        """
        for item in items:
            pixels = pixels_of(item)
            yield item, None if pixels is None else self.run(pixels)

    def describe(self) -> str:
        return f"{self.name} ({self.precision})"


class TorchRuntime(Runtime):
    """The module itself, normalised and autocast on its device (the reference)."""

    name = "torch"

    def __init__(self, function: torch.nn.Module, device: torch.device, precision: str) -> None:
        self.function = function.eval().to(device, memory_format=torch.channels_last)
        self.device = device
        self.precision = precision

    @torch.inference_mode()
    def run(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(pixels, np.ndarray):
            pixels = torch.from_numpy(np.ascontiguousarray(pixels))
        pixels = pixels.to(self.device, non_blocking=True)
        with autocast_context(self.precision, self.device):
            outputs = self.function(pixels)
        return outputs.float().cpu().numpy()


def _as_numpy(pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.cpu().numpy()
    return np.ascontiguousarray(pixels, dtype=np.uint8)


class OnnxRuntime(Runtime):
    """ONNX Runtime: its CPU provider, or CUDA / TensorRT where installed and asked for."""

    name = "onnxruntime"

    def __init__(self, graph: ExportedGraph, device: torch.device, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable(f"onnxruntime is not installed ({exc})") from None
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            offered = ort.get_available_providers()
            gpu = [p for p in ("CUDAExecutionProvider",) if p in offered]
            if not gpu:
                raise RuntimeUnavailable("onnxruntime has no CUDA provider here "
                                         "(install onnxruntime-gpu)")
            providers = gpu + providers
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Passive between calls, like torch here (OMP_WAIT_POLICY): the loader needs the core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(graph.path), options, providers=providers)
        self.precision = "fp32"

    def run(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        # InferenceSession.run is thread-safe: API threads share one session.
        return self.session.run(None, {INPUT_NAME: _as_numpy(pixels)})[0]


class _SignalStack(ctypes.Structure):  # stack_t of sigaltstack(2)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def calling_threads_signal_stack() -> Iterator[None]:
    """Keep the calling thread's alternate signal stack as it was.

    OpenVINO's ``compile_model`` leaves a 20 KB alternate signal stack installed on
    the thread that called it, which it does not keep valid: the next signal whose
    Python handler runs there (Python installs handlers with SA_ONSTACK; torch's
    DataLoader handles SIGCHLD) killed the process with SIGSEGV (SI_KERNEL) as soon as
    a child process exited. Restoring the thread's previous setting avoids that.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    before = _SignalStack()
    saved = libc.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved:
            libc.sigaltstack(ctypes.byref(before), None)


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class OpenVinoRuntime(Runtime):
    """OpenVINO on the CPU: THROUGHPUT streams for batches, a LATENCY model for one query.

    A batch is split over the THROUGHPUT model's streams (each with its own cores, run
    asynchronously): a stream pre-empted by the image loader does not hold the others
    up at every layer the way one stream over all cores does. In the embedding pipeline
    on 2 cores that gave 218-247 img/s against 195-202 with one LATENCY stream, the same
    forward rate alone. ``run_many`` keeps two batches in flight, so a stream that
    finishes its part early starts on the next batch instead of waiting for the other
    stream and for Python. A single query runs on the LATENCY model: one stream, all
    threads. Infer requests are not thread-safe: each call takes a set of its own from
    a pool (API threads share us).
    """

    IN_FLIGHT_BATCHES = 2

    name = "openvino"

    def __init__(self, graph: ExportedGraph, threads: int, precision: str) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise RuntimeUnavailable(f"openvino is not installed ({exc})") from None
        self.precision = "bf16" if precision == "bf16" else "fp32"
        common = {
            "INFERENCE_NUM_THREADS": threads,
            # OpenVINO would pick bf16 by itself on a CPU with AMX; we decide precision.
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
        }
        self.core = ov.Core()
        self.graph = self.core.read_model(str(graph.path))
        with calling_threads_signal_stack():
            self.batched = self.core.compile_model(self.graph, "CPU",
                                                   {**common, "PERFORMANCE_HINT": "THROUGHPUT"})
        self.streams = max(1, int(self.batched.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.common = common
        self._latency = None
        self._lock = threading.Lock()
        self._idle_requests: list[list] = []  # sets of IN_FLIGHT_BATCHES * streams
        self.local = threading.local()

    @contextlib.contextmanager
    def _request_set(self) -> Iterator[list]:
        with self._lock:
            requests = self._idle_requests.pop() if self._idle_requests else None
        if requests is None:
            requests = [self.batched.create_infer_request()
                        for _ in range(self.IN_FLIGHT_BATCHES * self.streams)]
        try:
            yield requests
        finally:
            with self._lock:
                self._idle_requests.append(requests)

    def _start(self, pixels: Pixels, free: deque) -> list:
        pixels = _as_numpy(pixels)
        parts = np.array_split(pixels, min(self.streams, len(pixels)))
        started = [free.popleft() for _ in parts]
        for request, part in zip(started, parts, strict=True):
            request.start_async({0: part})  # copies the part: the caller may reuse it
        return started

    @staticmethod
    def _collect(started: list, free: deque) -> np.ndarray:
        outputs = []
        for request in started:
            request.wait()
            outputs.append(np.array(request.get_output_tensor(0).data, dtype=np.float32))
            free.append(request)
        return np.concatenate(outputs)

    def run(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        with self._request_set() as requests:
            free = deque(requests)
            return self._collect(self._start(pixels, free), free)

    def run_many(self, items: Iterable[Item], pixels_of: Callable[[Item], Pixels | None]
                 ) -> Iterator[tuple[Item, np.ndarray | None]]:
        with self._request_set() as requests:
            free = deque(requests)
            pending: deque[tuple[Item, list | None]] = deque()
            try:
                for item in items:
                    pixels = pixels_of(item)
                    if pixels is None:
                        pending.append((item, None))
                        continue
                    # Wait for the oldest batch only when its requests are needed.
                    while len(free) < min(self.streams, len(pixels)):
                        yield self._finish(pending.popleft(), free)
                    pending.append((item, self._start(pixels, free)))
                    while pending and pending[0][1] is None:
                        yield pending.popleft()
                while pending:
                    yield self._finish(pending.popleft(), free)
            finally:  # a consumer that stops early: no request may still be running
                for _, started in pending:
                    for request in started or ():
                        request.wait()

    def _finish(self, entry: tuple[Item, list | None], free: deque
                ) -> tuple[Item, np.ndarray | None]:
        item, started = entry
        return item, None if started is None else self._collect(started, free)

    def run_one(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        request = getattr(self.local, "latency_request", None)
        if request is None:
            with self._lock:  # compiled once, on the first query
                if self._latency is None:
                    with calling_threads_signal_stack():
                        self._latency = self.core.compile_model(
                            self.graph, "CPU", {**self.common, "PERFORMANCE_HINT": "LATENCY"})
            request = self.local.latency_request = self._latency.create_infer_request()
        request.infer({0: _as_numpy(pixels)})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)


def reduced_min_cosine(function: torch.nn.Module, graph: ExportedGraph, precision: str
                       ) -> float:
    """The check for a runtime at ``precision``: 0.999, or PyTorch's own autocast cosine
    (less a little slack) where that is lower."""
    reference = TorchRuntime(copy.deepcopy(function).cpu().float(), torch.device("cpu"),
                             precision)
    own = float(cosines(reference.run(graph.check_pixels), graph.reference).min())
    return min(REDUCED_MIN_COSINE, own - AUTOCAST_SLACK)


def open_runtime(name: str, *, torch_function: Callable[[], torch.nn.Module],
                 graph: Callable[[], ExportedGraph], device: torch.device, precision: str,
                 threads: int | None = None) -> Runtime:
    """``name`` (not 'auto') for this function, checked against PyTorch when it is a graph.

    ``torch_function`` and ``graph`` are called only when needed (a graph is exported at
    most once). Raises :class:`RuntimeUnavailable` or
    :class:`~indexer.model.export.GraphRefused` with the reason.
    """
    if name == "torch":
        return TorchRuntime(torch_function(), device, precision)
    if name not in GRAPH_RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {name!r}")
    if not installed(name):
        raise RuntimeUnavailable(f"{name} is not installed (pip install {name})")
    if name == "openvino" and device.type != "cpu":
        raise RuntimeUnavailable(f"openvino runs on the CPU here, not on {device}")
    threads = threads or usable_cores()
    try:
        exported = graph()
    except (GraphRefused, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter failure means: not this runtime
        raise GraphRefused(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    runtime = (OnnxRuntime(exported, device, threads) if name == "onnxruntime"
               else OpenVinoRuntime(exported, threads, precision))
    min_cosine = (GRAPH_MIN_COSINE if runtime.precision == "fp32"
                  else reduced_min_cosine(torch_function(), exported, runtime.precision))
    what = f"{name} on {exported.path.name}"
    lowest = check_outputs(runtime.run(exported.check_pixels), exported, min_cosine, what)
    lowest = min(lowest, check_outputs(
        np.concatenate([runtime.run_one(one[None]) for one in exported.check_pixels]),
        exported, min_cosine, f"{what}, one image at a time"))
    log.info("runtime %s checked: cosine to PyTorch %.6f on %d reference photos",
             runtime.describe(), lowest, len(exported.check_pixels))
    return runtime

"""Where and how precisely the model runs: device, precision, loader workers, torch threads.

* **Precision** 'auto' is fp16 autocast on CUDA, bf16 autocast on a CPU with native
  bf16 (AVX512-BF16 / AMX), else fp32: emulated bf16 ran 11x slower than fp32 on an
  AVX2 machine.
* **Workers** 'auto' (-1) leaves the forward pass the cores it needs on a CPU and gives
  a GPU most of them, since there decoding is the bottleneck.

Shared by the embedder and the trainer, so both choose the same way.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Literal

import torch

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).

    Without it oneDNN emulates bf16 through fp32 and runs slower than plain fp32.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int, device: torch.device) -> int:
    """-1: enough loader workers to keep the model busy, without starving it of cores.

    On CPU the forward pass needs the cores: decoding a catalogue JPEG costs a few ms
    against tens of ms of forward per image, so one worker per ~8 cores keeps up.
    On CUDA the GPU outruns decoding: use most cores.
    """
    if workers < -1:
        raise ValueError(f"workers must be >= -1 (-1: automatic); got {workers}")
    if workers >= 0:
        return workers
    cores = usable_cores()
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return 0 if cores < 2 else max(1, min(4, cores // 8))


def auto_torch_threads(workers: int, device: torch.device) -> int | None:
    """Torch threads that leave the loader workers a core each, when cores are plenty.

    With few cores (fewer than 4) a core given to the loader costs the forward pass more
    than the loader's occasional pre-emption of a torch thread: on 2 cores, 1 torch
    thread made the forward ~1.4x slower while decoding a 348-px JPEG takes ~3 ms
    against ~40 ms of forward per image. So there torch keeps its threads (None: leave
    the setting alone). Never raises torch's own choice; CUDA leaves it alone.
    """
    cores = usable_cores()
    if device.type != "cpu" or workers == 0 or cores < 4:
        return None
    return max(1, min(torch.get_num_threads(), cores - workers))

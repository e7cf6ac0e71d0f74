"""The real lite0 backbone: the positional weight mapping is verified on real photos."""

from __future__ import annotations

import pytest
import timm
import timm.data
import torch

from indexer.model.backbone import UnknownBackbone, create_backbone
from indexer.model.modeldir import pretrained_model
from indexer.model.weights import WeightsError, packaged_weights_path, read_state_dict

PALACE, DAISY = 698, 985  # ImageNet class indices


@pytest.mark.slow
def test_packaged_weights_classify_known_photos(sample_photos):
    model, config = create_backbone("tf_efficientnet_lite0", num_classes=1000)
    assert config["input_size"] == (3, 224, 224) and config["interpolation"] == "bicubic"
    transform = timm.data.create_transform(**config, is_training=False)
    batch = torch.stack([transform(sample_photos["china"]), transform(sample_photos["flower"])])
    with torch.inference_mode():
        top1 = model(batch).argmax(dim=1).tolist()
    assert top1 == [PALACE, DAISY]


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

"""The loss registry: every name builds, trains, and a typo lists the valid names."""

import pytest
import torch
import torch.nn.functional as F

from indexer.training.losses import LOSSES, UnknownLoss, build_loss, loss_spec


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_a_finite_gradient(name):
    torch.manual_seed(0)
    built = build_loss(name, num_classes=4, dim=16)
    embeddings = F.normalize(torch.randn(16, 16, requires_grad=True), dim=1)
    labels = torch.arange(4).repeat_interleave(4)
    loss = built(embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert built.describe()["name"] == name
    assert (built.miner is not None) == (name in ("triplet", "multisimilarity"))
    # Proxy losses own parameters and say at what rate they learn.
    assert bool(list(built.loss.parameters())) == loss_spec(name).has_parameters


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(UnknownLoss) as error:
        loss_spec("softriple")
    message = str(error.value)
    assert "Did you mean 'softtriple'?" in message
    for name in LOSSES:
        assert name in message


def test_settings_are_checked():
    with pytest.raises(ValueError, match="no setting scale"):
        build_loss("softtriple", 4, 16, {"scale": 3})
    with pytest.raises(ValueError, match="hard, semihard"):
        build_loss("triplet", 4, 16, {"triplets": "hardest"})
    hard = build_loss("triplet", 4, 16, {"triplets": "hard", "margin": 0.3})
    assert hard.miner.type_of_triplets == "hard" and hard.params["margin"] == 0.3

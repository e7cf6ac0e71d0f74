"""``lookalike explain``: where the similarity of a photo and a catalogued item comes from."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from indexer.cli.common import CommandError, add_command, open_engine
from indexer.explain import METHODS

TOP_CELLS = 5


def register(subparsers) -> None:
    explain = add_command(
        subparsers, "explain",
        "show where in QUERY and in catalogue item ITEM_ID their similarity comes from",
        cmd_explain,
        "lookalike explain query.jpg 3f2a...c9 --png why.png",
        "lookalike explain query.jpg 3f2a...c9 --method occlusion --json",
    )
    explain.add_argument("image", type=Path, help="query image file (as `lookalike search`)")
    explain.add_argument("item_id", help="the result's item id (from `lookalike search`)")
    explain.add_argument("--method", choices=METHODS, default=METHODS[0],
                         help="decomposition (default, exact: the maps sum to the score) "
                         "or occlusion (the score's drop with each patch hidden; slower)")
    explain.add_argument("--png", type=Path,
                         help="write query and result side by side with their heatmaps")
    explain.add_argument("--json", action="store_true", help="print a JSON object")


def where(heatmap: np.ndarray, cells: np.ndarray) -> str:
    """The hottest cell's pixels and the share of the positive similarity near it."""
    positive = np.clip(heatmap, 0, None)
    total = float(positive.sum())
    if total <= 0:
        return "no cell adds to the score"
    row, col = np.unravel_index(int(np.argmax(positive)), positive.shape)
    x0, y0, x1, y1 = (round(float(v)) for v in cells[row, col])
    top = float(np.sort(positive, axis=None)[::-1][:TOP_CELLS].sum())
    return (f"strongest at x {x0}-{x1}, y {y0}-{y1} ({positive[row, col] / total:.0%} of "
            f"the positive similarity); the top {TOP_CELLS} of {positive.size} cells hold "
            f"{top / total:.0%}")


def cmd_explain(args) -> None:
    if not args.image.is_file():
        raise CommandError(f"no such image file: {args.image}")
    if args.png is not None and args.png.suffix.lower() != ".png":
        raise CommandError(f"--png: the file name must end in .png, got {args.png}")
    with open_engine(args) as engine:
        started = time.perf_counter()
        explained = engine.explain(args.image, args.item_id, method=args.method)
        took_ms = (time.perf_counter() - started) * 1000
        if args.png is not None:
            from indexer.explain.render import save_png
            from indexer.images import load_image

            limit = engine.settings.max_image_pixels
            result = engine.catalog.get(args.item_id)
            save_png(explained, load_image(args.image, max_pixels=limit).image,
                     load_image(engine.settings.home / result.stored_path,
                                max_pixels=limit).image, args.png)
        if args.json:
            print(json.dumps({"query": str(args.image), **explained.as_dict(),
                              "took_ms": round(took_ms, 1),
                              "png": str(args.png) if args.png else None}, indent=2))
            return
        searched = ("" if explained.search_score is None
                    else f"; the search scores it {explained.search_score:.4f}")
        print(f"score {explained.score:.4f} ({explained.method}, model "
              f"{explained.model_version}, {took_ms:.0f} ms{searched})")
        for side in ("query", "result"):
            size = getattr(explained, f"{side}_size")
            print(f"  {side:<6} {size[0]}x{size[1]}: "
                  f"{where(getattr(explained, f'{side}_heatmap'), explained.cells(side))}")
        if args.png is not None:
            print(f"saved {args.png}")

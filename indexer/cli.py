"""The ``lookalike`` command line: a thin layer over :mod:`indexer.engine`.

Output meant for people goes to stdout; progress bars and logs go to stderr.
Bad input ends the command with a one-line reason and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from indexer.config import load_settings
from indexer.index.errors import IndexStoreError
from indexer.vectors import VectorStoreError

log = logging.getLogger("lookalike")

EXIT_BAD_INPUT = 2


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Query-by-image search for product catalogues.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples(
            "lookalike ingest photos/ && lookalike embed && lookalike index build",
            "lookalike search query.jpg -k 5",
            "LOOKALIKE_HOME=/srv/lookalike lookalike index stats",
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--home", type=Path, help="data directory (default: $LOOKALIKE_HOME or ./lookalike-data)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, handler: Callable, *examples: str):
        sub = commands.add_parser(
            name, help=help_text, description=help_text, epilog=_examples(*examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    demo = command(
        "demo", "index a folder of images (or a generated sample) and run a search", cmd_demo,
        "lookalike demo", "lookalike demo --images ~/product-photos",
    )
    demo.add_argument("--images", type=Path, help="a folder of images (default: generated)")
    demo.add_argument("-k", type=_positive_int, default=5, help="results to show (default 5)")

    ingest = command(
        "ingest", "add the images of a folder or a manifest (CSV / JSON Lines) to the catalog",
        cmd_ingest,
        "lookalike ingest photos/            # one sub-folder per product or class",
        "lookalike ingest catalogue.csv      # columns: path or image_url, product_id, ...",
    )
    ingest.add_argument("path", type=Path, help="folder or manifest file")

    embed = command(
        "embed", "embed every stored image the current model has not embedded yet", cmd_embed,
        "lookalike embed", "LOOKALIKE_BATCH_SIZE=64 lookalike embed",
    )
    embed.add_argument("--limit", type=_positive_int, help="embed at most this many items")

    index = command(
        "index", "build or inspect the search index", None, "lookalike index build --shards 4",
    )
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = index_commands.add_parser(
        "build", help="build a new index version from the vector store and switch to it",
        description="Build a new index version from the vector store and switch to it.",
        epilog=_examples(
            "lookalike index build", "lookalike index build --shards 4 --factory IVF1024,Flat"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.set_defaults(handler=cmd_index_build)
    build.add_argument("--shards", type=_positive_int, help="number of shards (default: setting)")
    build.add_argument(
        "--factory", help="'auto' (chosen by size) or a faiss factory string, e.g. IVF1024,Flat"
    )
    stats = index_commands.add_parser(
        "stats", help="show the current index version and catalog counts",
        description="Show the current index version and catalog counts.",
        epilog=_examples("lookalike index stats", "lookalike index stats --json"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.set_defaults(handler=cmd_index_stats)
    stats.add_argument("--json", action="store_true", help="print JSON")

    search = command(
        "search", "find the catalogue images that look most like IMAGE", cmd_search,
        "lookalike search query.jpg", "lookalike search query.jpg -k 20 --json",
    )
    search.add_argument("image", type=Path, help="query image file")
    search.add_argument("-k", type=_positive_int, default=10, help="results (default 10)")
    search.add_argument("--json", action="store_true", help="print a JSON object")

    evaluate = command(
        "evaluate", "Recall@K, MAP@R, R-Precision and NMI on the test classes of labelled folders",
        cmd_evaluate,
        "lookalike evaluate data/train data/val data/test --split class_split.csv --pretrained",
        "lookalike evaluate new-products/ --all-classes",
    )
    evaluate.add_argument("data", type=Path, nargs="+", help="folders, one sub-folder per class")
    evaluate.add_argument("--split", type=Path, help="class split CSV (class_name, half)")
    evaluate.add_argument(
        "--all-classes", action="store_true", help="treat every class in DATA as a test class"
    )
    which = evaluate.add_mutually_exclusive_group()
    which.add_argument("--model", help="model name or directory (default: the current model)")
    which.add_argument(
        "--pretrained", action="store_true", help="the pretrained backbone's pooled features"
    )
    evaluate.add_argument("--output", type=Path, help="where to save the metrics as JSON")
    evaluate.add_argument(
        "--save-embeddings", type=Path, metavar="NPZ",
        help="also save the test embeddings and labels (e.g. for tests/bench/bench_index.py)",
    )
    return parser


def _engine(args):
    from indexer.engine import Lookalike

    overrides = {"home": args.home} if args.home else {}
    return Lookalike.open(**overrides)


def cmd_demo(args) -> None:
    from indexer.sample import write_sample_catalogue

    with _engine(args) as engine:
        images = args.images
        if images is None:
            images = engine.settings.home / "sample-catalogue"
            if not images.exists():
                print(f"Generating a synthetic sample catalogue in {images} "
                      "(drawn shapes, not photographs; use --images DIR for your own) ...")
                write_sample_catalogue(images)
        elif not images.is_dir():
            raise CommandError(f"--images: not a folder: {images}")
        started = time.perf_counter()
        report = engine.ingest(images, progress=True)
        _print_ingest(report)
        embedded = engine.embed(progress=True)
        print(f"embedded {embedded.embedded} images with {embedded.model_version}")
        version = engine.build_index()
        print(f"index version {version} is current "
              f"({time.perf_counter() - started:.1f} s from folder to index)")
        query = next(iter(sorted(p for p in images.rglob("*.jpg"))), None) or next(
            (engine.settings.home / item.stored_path
             for item in engine.catalog.items_with_status("indexed", limit=1)), None)
        if query is None:
            raise CommandError("nothing was indexed; see the failures above")
        print(f"\nsearching with {query}:")
        _print_hits(engine.search_image(query, k=args.k), engine.settings.home)


def cmd_ingest(args) -> None:
    if not args.path.exists():
        raise CommandError(f"no such file or folder: {args.path}")
    with _engine(args) as engine:
        _print_ingest(engine.ingest(args.path, progress=True))


def cmd_embed(args) -> None:
    with _engine(args) as engine:
        report = engine.embed(progress=True, limit=args.limit)
        print(f"embedded {report.embedded} items with {report.model_version}; "
              f"{len(report.failed)} failed")
        for item_id, reason in report.failed:
            print(f"  failed {item_id[:12]}: {reason}")


def cmd_index_build(args) -> None:
    with _engine(args) as engine:
        started = time.perf_counter()
        version = engine.build_index(shards=args.shards, factory=args.factory)
        print(f"index version {version} is current ({time.perf_counter() - started:.1f} s)")


def cmd_index_stats(args) -> None:
    with _engine(args) as engine:
        stats = engine.stats()
    if args.json:
        print(json.dumps(stats, indent=2, default=str))
        return
    print(f"home:   {stats['home']}")
    print("items:  " + ", ".join(f"{k} {v}" for k, v in sorted(stats["items"].items())) or "none")
    index = stats["index"]
    if index is None:
        print("index:  none yet (run `lookalike index build`)")
        return
    print(f"index:  {index['version']}  model {index['model_version']}")
    print(f"        {index['total']} vectors, dim {index['dim']}, {index['factory']}, "
          f"{index['n_shards']} shard(s), nprobe {index['default_nprobe']}")


def cmd_search(args) -> None:
    if not args.image.is_file():
        raise CommandError(f"no such image file: {args.image}")
    with _engine(args) as engine:
        started = time.perf_counter()
        hits = engine.search_image(args.image, k=args.k)
        took_ms = (time.perf_counter() - started) * 1000
        if args.json:
            print(json.dumps({
                "query": str(args.image),
                "took_ms": round(took_ms, 1),
                "results": [hit.as_dict(engine.settings.home) for hit in hits],
            }, indent=2))
        else:
            _print_hits(hits, engine.settings.home)


def cmd_evaluate(args) -> None:
    from indexer.evaluation import evaluate_folders

    overrides = {"home": args.home} if args.home else {}
    settings = load_settings(**overrides)
    model = "pretrained" if args.pretrained else (args.model or settings.model)
    result = evaluate_folders(
        args.data, settings, model=model, split_file=args.split,
        all_classes=args.all_classes, progress=True,
    )
    for name, value in result.metrics.table_rows():
        print(f"{name:<12} {value}")
    output = args.output or settings.home / "evaluations" / f"{result.slug}.json"
    result.save(output)
    print(f"saved {output}")
    if args.save_embeddings:
        result.save_embeddings(args.save_embeddings)
        print(f"saved {args.save_embeddings}")


def _print_ingest(report) -> None:
    print(f"added {report.added}, already present {report.duplicates}, "
          f"failed {len(report.failed)}, URLs pending {report.pending_urls}")
    for source, reason in report.failed:
        print(f"  failed {source}: {reason}")


def _print_hits(hits, home: Path) -> None:
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        item = hit.item
        print(f"{rank:3d}. {hit.score:.3f}  {item.label or '-':<24} "
              f"{item.product_id or '-':<24} {item.id[:12]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    try:
        args.handler(args)
    except CommandError as error:
        print(f"lookalike: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (
        ValueError, LookupError, RuntimeError, OSError, IndexStoreError, VectorStoreError
    ) as error:
        # The library's errors name what is wrong; show that line, not a traceback.
        if args.verbose:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"lookalike: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lookalike: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

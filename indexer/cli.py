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
from indexer.training.config import TrainConfig
from indexer.training.losses import LOSSES
from indexer.vectors import VectorStoreError

TRAIN_DEFAULTS = TrainConfig()
LOSS_NAMES = tuple(LOSSES)

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
    train = command(
        "train", "learn what 'looks alike' means from labelled photos (metric learning)",
        cmd_train,
        "lookalike train data/train data/val data/test --split class_split.csv",
        "lookalike train photos/ --loss proxynca --seed 1 --use",
        "lookalike train photos/ --name softtriple-seed0 --resume   # after an interruption",
    )
    train.add_argument("data", type=Path, nargs="+",
                       help="folders (one sub-folder per class) or manifests with a label column")
    train.add_argument("--split", type=Path,
                       help="class split CSV (class_name, half); default: sorted classes, "
                       "first half train, second half test")
    train.add_argument("--loss", default=TRAIN_DEFAULTS.loss,
                       help=f"one of {', '.join(LOSS_NAMES)} (default {TRAIN_DEFAULTS.loss})")
    train.add_argument("--loss-param", action="append", default=[], metavar="NAME=VALUE",
                       help="change one of the loss's settings, e.g. margin=0.2 (repeatable)")
    train.add_argument("--dim", type=int, default=TRAIN_DEFAULTS.dim,
                       help=f"learned embedding size (default {TRAIN_DEFAULTS.dim})")
    train.add_argument("--epochs", type=int, default=TRAIN_DEFAULTS.epochs)
    train.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size)
    train.add_argument("--m-per-class", type=int, default=TRAIN_DEFAULTS.m_per_class,
                       help="images of each class in a batch")
    train.add_argument("--lr", type=float, default=TRAIN_DEFAULTS.lr, help="backbone rate")
    train.add_argument("--head-lr", type=float, default=TRAIN_DEFAULTS.head_lr)
    train.add_argument("--loss-lr", type=float, help="proxy/centre rate (default: the loss's)")
    train.add_argument("--warmup-epochs", type=int, default=TRAIN_DEFAULTS.warmup_epochs,
                       help="epochs that train only the head, backbone frozen")
    train.add_argument("--train-stages", default=str(TRAIN_DEFAULTS.train_stages),
                       help="final backbone stages that train, or 'all' (default "
                       f"{TRAIN_DEFAULTS.train_stages})")
    train.add_argument("--views", type=int, default=TRAIN_DEFAULTS.views,
                       help="views of each photo cached for a frozen trunk")
    train.add_argument("--pretrained-weight", type=float,
                       default=TRAIN_DEFAULTS.pretrained_weight,
                       help="share of the pretrained features blended into the embedding "
                       f"(0: learned features only; default {TRAIN_DEFAULTS.pretrained_weight})")
    train.add_argument("--validation-fraction", type=float,
                       default=TRAIN_DEFAULTS.validation_fraction,
                       help="training classes held out to choose the best epoch")
    train.add_argument("--no-freeze-bn", dest="freeze_bn", action="store_false",
                       help="update batch-norm statistics while training")
    train.add_argument("--seed", type=int, default=TRAIN_DEFAULTS.seed)
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--no-amp", dest="amp", action="store_false",
                       help="no mixed precision (on by default on CUDA)")
    train.add_argument("--backbone", default=TRAIN_DEFAULTS.backbone)
    train.add_argument("--weights", default=TRAIN_DEFAULTS.weights,
                       help="'packaged' ImageNet weights, 'random', or a checkpoint file")
    train.add_argument("--workers", type=int, default=TRAIN_DEFAULTS.workers,
                       help="image-decoding threads")
    train.add_argument("--name", help="run name (default: LOSS-seedSEED)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run's checkpoint instead of starting afresh")
    train.add_argument("--use", action="store_true",
                       help="make the trained model the current one")

    models = command("models", "list the trained models, or choose the current one",
                     lambda args: cmd_models_list(args),
                     "lookalike models list", "lookalike models use NAME")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    model_commands.add_parser("list", help="models with their test metrics; * marks the current")
    use = model_commands.add_parser(
        "use", help="make NAME the model the embedder loads (re-embed and rebuild the index)"
    )
    use.add_argument("name", help="a name from `lookalike models list`, or 'pretrained'")
    use.set_defaults(handler=cmd_models_use)
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
    from indexer.model.modeldir import current_model_spec

    overrides = {"home": args.home} if args.home else {}
    settings = load_settings(**overrides)
    model = "pretrained" if args.pretrained else (args.model or current_model_spec(settings))
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


def _settings(args):
    return load_settings(**({"home": args.home} if args.home else {}))


def _loss_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--loss-param takes NAME=VALUE; got {pair!r}")
        try:
            params[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            params[name.strip()] = text  # a bare word, e.g. triplets=hard
    return params


def cmd_train(args) -> None:
    from indexer.model.modeldir import use_model
    from indexer.training import train_model

    settings = _settings(args)
    config = TrainConfig(
        loss=args.loss, loss_params=_loss_params(args.loss_param), dim=args.dim,
        epochs=args.epochs, batch_size=args.batch_size, m_per_class=args.m_per_class,
        lr=args.lr, head_lr=args.head_lr, loss_lr=args.loss_lr,
        warmup_epochs=args.warmup_epochs, freeze_bn=args.freeze_bn,
        train_stages=args.train_stages, views=args.views,
        validation_fraction=args.validation_fraction,
        pretrained_weight=args.pretrained_weight, seed=args.seed, device=args.device,
        amp=args.amp, backbone=args.backbone, weights=args.weights, workers=args.workers,
    )
    outcome = train_model(args.data, settings, config, split_file=args.split, name=args.name,
                          resume=args.resume, progress=True, on_epoch_end=_print_epoch)
    for what, reason in outcome.skipped:
        print(f"skipped {what}: {reason}")
    result = outcome.result
    print(f"trained {len(outcome.data.train)} images of {len(outcome.data.train_classes)} "
          f"classes in {result.seconds / 60:.1f} min; best epoch {result.best_epoch}"
          + (f" (validation R@1 {result.best_validation['recall_at_1']:.1f}, "
             f"MAP@R {result.best_validation['map_at_r']:.1f})"
             if result.best_validation is not None else ""))
    print(f"test classes: {len(outcome.data.test_classes)}, images: {len(outcome.data.test)}")
    for name, value in outcome.test_metrics.table_rows():
        print(f"{name:<12} {value}")
    print(f"model {outcome.card.version}")
    print(f"saved {outcome.model_dir}")
    if args.use:
        use_model(outcome.model_dir.name, settings)
        print(f"now using {outcome.card.version}; run `lookalike embed` and "
              "`lookalike index build` to re-index with it")


def _print_epoch(epoch: int, record: dict) -> None:
    validation = ("" if record["validation_map_at_r"] is None else
                  f", validation R@1 {record['validation_recall_at_1']:.1f}"
                  f" MAP@R {record['validation_map_at_r']:.1f}")
    print(f"epoch {epoch}: loss {record['loss']:.4f}{validation} ({record['seconds']:.0f} s)",
          flush=True)


def cmd_models_list(args) -> None:
    from indexer.model.modeldir import list_models

    for entry in list_models(_settings(args)):
        mark = "*" if entry.current else " "
        if entry.card is None:
            print(f"{mark} {entry.name:<48} the backbone's ImageNet features")
            continue
        test = (entry.card.metrics or {}).get("test") or {}
        figures = (f"R@1 {test['recall_at_1']:.1f}  MAP@R {test['map_at_r']:.1f}"
                   if test else "no test metrics")
        loss = entry.card.loss.get("name") if isinstance(entry.card.loss, dict) else entry.card.loss
        print(f"{mark} {entry.name:<48} {loss or '-':<16} dim {entry.card.embedding_dim:<5} "
              f"{figures}  {entry.card.created}")


def cmd_models_use(args) -> None:
    from indexer.model.modeldir import use_model

    version = use_model(args.name, _settings(args))
    print(f"now using {args.name} ({version}); run `lookalike embed` and "
          "`lookalike index build` to re-index with it")


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

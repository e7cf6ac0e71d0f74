"""The model commands: ``train``, ``evaluate`` and ``models list | use``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from indexer.cli.common import CommandError, add_command, global_overrides, settings_from
from indexer.config import load_settings
from indexer.training.config import TrainConfig
from indexer.training.losses import LOSSES

TRAIN_DEFAULTS = TrainConfig()
LOSS_NAMES = tuple(LOSSES)


def register(subparsers) -> None:
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_models(subparsers)


def _add_evaluate(subparsers) -> None:
    evaluate = add_command(
        subparsers, "evaluate",
        "Recall@K, MAP@R, R-Precision and NMI on the test classes of labelled folders",
        cmd_evaluate,
        "lookalike evaluate data/train data/val data/test --split class_split.csv --pretrained",
        "lookalike evaluate new-products/ --all-classes",
        "lookalike evaluate photos/ --pretrained --report quality/   # open quality/index.html",
        "lookalike evaluate data/test --all-classes --pretrained --backbone tf_efficientnet_lite2",
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
    evaluate.add_argument(
        "--backbone", help="the backbone whose pretrained features are evaluated (default: "
        "$LOOKALIKE_BACKBONE or tf_efficientnet_lite0); a trained model has its own",
    )
    evaluate.add_argument("--output", type=Path, help="where to save the metrics as JSON")
    evaluate.add_argument(
        "--save-embeddings", type=Path, metavar="NPZ",
        help="also save the test embeddings and labels (e.g. for tests/bench/bench_index.py)",
    )
    evaluate.add_argument(
        "--report", type=Path, metavar="DIR",
        help="also write a quality report there (created if missing): index.html with "
        "per-class scores, the most confused classes with example photos, and a t-SNE map",
    )


def _add_train(subparsers) -> None:
    train = add_command(
        subparsers, "train",
        "learn what 'looks alike' means from labelled photos (metric learning)",
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
    _add_training_options(train)
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


def _add_training_options(train) -> None:
    """The loss and the optimisation schedule (defaults: :class:`TrainConfig`)."""
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


def _add_models(subparsers) -> None:
    models = add_command(subparsers, "models", "list the trained models, or choose the current one",
                         cmd_models_list,
                         "lookalike models list", "lookalike models use NAME")
    model_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    model_commands.add_parser(
        "list", help="models with their test metrics and the split each was measured on; "
        "* marks the current"
    )
    use = model_commands.add_parser(
        "use", help="make NAME the model the embedder loads (re-embed and rebuild the index)"
    )
    use.add_argument("name", help="a name from `lookalike models list`, or 'pretrained'")
    use.set_defaults(handler=cmd_models_use)


def cmd_evaluate(args) -> None:
    from indexer.evaluation import evaluate_folders
    from indexer.model.modeldir import current_model_spec

    overrides = {"backbone": args.backbone} if args.backbone else {}
    settings = load_settings(**global_overrides(args), **overrides)
    model = "pretrained" if args.pretrained else (args.model or current_model_spec(settings))
    if args.backbone and model != "pretrained":
        raise CommandError(f"--backbone chooses the pretrained features; the model {model!r} "
                           "has its own backbone (add --pretrained)")
    if args.report is not None:
        from indexer.report import ReportError, prepare_directory

        try:  # before minutes of embedding, not after
            prepare_directory(args.report)
        except ReportError as error:
            raise CommandError(str(error)) from None
    result = evaluate_folders(
        args.data, settings, model=model, split_file=args.split,
        all_classes=args.all_classes, progress=True,
    )
    for name, value in result.metrics.table_rows():
        print(f"{name:<12} {value}")
    print(f"{'split':<12} {result.split.describe()}")
    output = args.output or settings.evaluations_dir / f"{result.slug}.json"
    result.save(output)
    print(f"saved {output}")
    if args.save_embeddings:
        result.save_embeddings(args.save_embeddings)
        print(f"saved {args.save_embeddings}")
    if args.report is not None:
        from indexer.report import write_report

        print(f"report {write_report(result, args.report, settings)}")


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

    settings = settings_from(args)
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
    _warn_about_quality(outcome.model_dir.name, settings)
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
    """One line per model, then one indented line per measurement: what it was measured on."""
    from indexer.model.modeldir import list_models

    settings = settings_from(args)
    for entry in list_models(settings):
        mark = "*" if entry.current else " "
        if entry.card is None:
            installed = "" if entry.version else " (weights not installed)"
            print(f"{mark} {entry.name:<48} the backbone's ImageNet features: "
                  f"{settings.backbone}{installed}")
        else:
            first = entry.measurements[0] if entry.measurements else None
            figures = first.figures() if first else "no test metrics"
            card = entry.card
            loss = card.loss.get("name") if isinstance(card.loss, dict) else card.loss
            print(f"{mark} {entry.name:<48} {loss or '-':<16} dim {card.embedding_dim:<5} "
                  f"{figures}  {card.created}")
        for measurement in entry.measurements:
            label = "test" if measurement.source == "card" else "evaluated"
            print(f"      {label}: {measurement.figures()}  on {measurement.split.describe()}"
                  + ("" if measurement.source == "card" else f"  [{measurement.source}]"))


def cmd_models_use(args) -> None:
    from indexer.model.modeldir import use_model

    settings = settings_from(args)
    version = use_model(args.name, settings)
    print(f"now using {args.name} ({version}); run `lookalike embed` and "
          "`lookalike index build` to re-index with it")
    if args.name != "pretrained":  # the baseline: nothing was learned that could mislead
        _warn_about_quality(args.name, settings)


def _warn_about_quality(name: str, settings) -> None:
    """On stderr: the command still succeeds; the user learns the figures are thin."""
    from indexer.model.modeldir import model_measurements
    from indexer.model.quality import quality_warnings

    for warning in quality_warnings(name, model_measurements(name, settings)):
        print(f"lookalike: warning: {warning}", file=sys.stderr)

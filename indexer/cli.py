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

from indexer.config import load_settings, redact_url
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
            "lookalike ingest photos/     # store, embed and index the images",
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
        "demo", "start the whole system (API, web UI, workers, beat) on this machine and index "
        "a folder of images (or a generated sample) through it", cmd_demo,
        "lookalike demo                          # then open http://127.0.0.1:8000/",
        "lookalike demo --images ~/product-photos --bind 127.0.0.1:9000",
        "lookalike demo --no-serve               # index here and run one search, no servers",
    )
    demo.add_argument("--images", type=Path, help="a folder of images (default: generated)")
    demo.add_argument("--bind", "-b", help="host:port of the API and web UI "
                      "(default: $LOOKALIKE_API_BIND, 127.0.0.1:8000)")
    demo.add_argument("--no-serve", action="store_true",
                      help="index in this process and print one search; start nothing")
    demo.add_argument("-k", type=_positive_int, default=5,
                      help="with --no-serve: results to show (default 5)")

    up = command(
        "up", "start the API with the web UI, one worker per queue and beat; Ctrl-C stops all",
        cmd_up,
        "lookalike up", "LOOKALIKE_BROKER_URL=redis://127.0.0.1:6379/0 lookalike up -b :8080",
    )
    up.add_argument("--bind", "-b", help="host:port of the API and web UI "
                    "(default: $LOOKALIKE_API_BIND, 127.0.0.1:8000)")

    ingest = command(
        "ingest", "take in the images of a folder, a manifest (CSV / JSON Lines) or a site: "
        "download, store, embed and index them", cmd_ingest,
        "lookalike ingest photos/            # one sub-folder per product or class",
        "lookalike ingest catalogue.csv      # columns: path or image_url, product_id, ...",
        "lookalike ingest https://shop.example/        # crawl the site for products, here",
        "lookalike ingest catalogue.csv --background   # the workers do all of it; prints a job",
        "lookalike ingest catalogue.csv --background --wait",
    )
    ingest.add_argument("path", help="folder, manifest or image file, or a site's http(s) URL")
    how = ingest.add_mutually_exclusive_group()
    how.add_argument(
        "--inline", action="store_true",
        help="the default, kept as a synonym: run the whole job in this process "
        "(download URL rows, store, embed, index); every image ends stored or failed",
    )
    how.add_argument(
        "--background", action="store_true",
        help="record a job and hand it to the workers (`lookalike worker`); prints its id",
    )
    ingest.add_argument(
        "--wait", action="store_true", help="with --background: show progress until the job ends"
    )
    ingest.add_argument(
        "--once", action="store_true",
        help="do not re-crawl this source on the beat schedule",
    )

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
    rollback = index_commands.add_parser(
        "rollback", help="switch back to the index version that was current before this one",
        description="Switch CURRENT back to the previously active index version (repeat to go "
        "further back). Versions that fail verification or hold another model are skipped.",
        epilog=_examples("lookalike index rollback"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rollback.set_defaults(handler=cmd_index_rollback)
    reindex = index_commands.add_parser(
        "reindex", help="embed what the current model lacks, rebuild the index, switch to it",
        description="Re-index: embed every item the current model has not embedded (all of "
        "them after `lookalike models use`), build a new index version from the vector store, "
        "switch to it atomically and prune old versions (the previous ones stay for "
        "`lookalike index rollback`). Only one re-index runs at a time.",
        epilog=_examples("lookalike index reindex", "lookalike index reindex --background"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reindex.set_defaults(handler=cmd_index_reindex)
    reindex.add_argument(
        "--background", action="store_true", help="queue it for the index worker instead"
    )

    search = command(
        "search", "find the catalogue images that look most like IMAGE", cmd_search,
        "lookalike search query.jpg", "lookalike search query.jpg -k 20 --json",
        "lookalike search query.jpg --label shoes --min-score 0.5 --group-by-product",
    )
    search.add_argument("image", type=Path, help="query image file")
    search.add_argument("-k", type=_positive_int, default=10,
                        help="results (default 10; at most LOOKALIKE_API_SEARCH_MAX_K)")
    search.add_argument("--label", help="only items with this label")
    search.add_argument("--product-id", help="only items of this product")
    search.add_argument("--min-score", type=float, help="only hits scoring at least this (-1 to 1)")
    search.add_argument("--group-by-product", action="store_true",
                        help="one hit per product (its best-scoring image)")
    search.add_argument("--json", action="store_true", help="print a JSON object")

    catalogue_map = command(
        "map", "compute the t-SNE map of an index version here, cache it, optionally draw it",
        cmd_map,
        "lookalike map                       # the current version; the API serves it",
        "lookalike map --points 20000 --clusters 30",
        "lookalike map --png map.png --color label",
    )
    catalogue_map.add_argument("--version", help="index version (default: the current one)")
    catalogue_map.add_argument("--points", type=_positive_int,
                               help="vectors to sample (default: $LOOKALIKE_MAP_MAX_POINTS, 5000)")
    catalogue_map.add_argument("--clusters", type=_positive_int,
                               help="k-means clusters (default: about sqrt(points/2))")
    catalogue_map.add_argument("--png", type=Path, metavar="PATH",
                               help="also save a scatter plot (points and colours, no photos)")
    catalogue_map.add_argument("--color", choices=("cluster", "label"),
                               help="colour of the PNG's dots (default: label when items have "
                               "labels, else cluster)")
    catalogue_map.add_argument("--size", type=_positive_int, default=1000,
                               help="the PNG's width and height in pixels (default 1000)")

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

    worker = command(
        "worker", "run a background worker (Celery) for some or all of the queues", cmd_worker,
        "lookalike worker                                 # every queue, one process",
        "lookalike worker --queues ingest --concurrency 8  # downloads: I/O bound",
        "lookalike worker --queues embed                  # one per GPU",
        "LOOKALIKE_BROKER_URL=redis://localhost:6379/0 lookalike worker --queues index",
    )
    worker.add_argument(
        "--queues", "-Q", type=_queue_list,
        help="comma-separated: ingest, embed, index (default: all three)",
    )
    worker.add_argument(
        "--concurrency", "-c", type=_positive_int,
        help="pool processes (default: 1 with embed or index, else 4); index needs 1",
    )
    worker.add_argument(
        "--pool", "-P", choices=("prefork", "solo", "threads"), default="prefork",
        help="prefork (default: time limits enforced, a dead child's task requeued), solo, "
        "threads",
    )
    worker.add_argument("--name", "-n", help="node name (default: QUEUES@HOST)")
    worker.add_argument("--loglevel", "-l", default="INFO", help="DEBUG, INFO (default), WARNING")

    serve = command(
        "serve", "serve the HTTP search API (gunicorn; the model and index load at start)",
        cmd_serve,
        "LOOKALIKE_API_KEY=$(openssl rand -hex 24) lookalike serve   # http://127.0.0.1:8000",
        "lookalike serve --bind 0.0.0.0:8080 --workers 4 --threads 8",
        "curl -F image=@query.jpg 'http://127.0.0.1:8000/api/v1/search?k=5'",
    )
    serve.add_argument("--bind", "-b", help="host:port (default: $LOOKALIKE_API_BIND, "
                       "127.0.0.1:8000)")
    serve.add_argument("--workers", "-w", type=_positive_int,
                       help="processes (default: $LOOKALIKE_API_WORKERS, 2)")
    serve.add_argument("--threads", type=_positive_int,
                       help="request threads per process (default: $LOOKALIKE_API_THREADS, 4)")

    beat = command(
        "beat", "run the scheduler: re-crawl sources, re-index, sweep stalled jobs", cmd_beat,
        "lookalike beat",
        "LOOKALIKE_REINDEX_INTERVAL=3600 LOOKALIKE_RECRAWL_INTERVAL=0 lookalike beat",
    )
    beat.add_argument(
        "--schedule", type=Path,
        help="where beat keeps its state (default: HOME/celerybeat-schedule)",
    )
    beat.add_argument("--loglevel", "-l", default="INFO", help="DEBUG, INFO (default), WARNING")

    jobs = command(
        "jobs", "show jobs (ingest, re-crawl, re-index): progress, counts, failures; retry",
        cmd_jobs,
        "lookalike jobs                  # the latest jobs",
        "lookalike jobs 12 --json        # one job, its counts and failed URLs with reasons",
        "lookalike jobs retry 12         # queue job 12's failed URLs again (only those)",
        "lookalike jobs retry 12 --inline",
    )
    jobs.add_argument("target", nargs="*", metavar="ID | retry ID",
                      help="a job id to show, or `retry ID`")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument("--limit", type=_positive_int, default=20,
                      help="jobs to list (default 20); failures to show for one job (default 20)")
    jobs.add_argument("--inline", action="store_true",
                      help="with retry: fetch, embed and index here instead of in the workers")
    return parser


WORKER_QUEUES = ("ingest", "embed", "index")


def _queue_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKER_QUEUES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(WORKER_QUEUES)}; got {text!r}"
        )
    return list(dict.fromkeys(names))


def _engine(args):
    from indexer.engine import Lookalike

    overrides = {"home": args.home} if args.home else {}
    return Lookalike.open(**overrides)


def _demo_images(args, settings) -> Path:
    from indexer.sample import write_sample_catalogue

    if args.images is not None:
        if not args.images.is_dir():
            raise CommandError(f"--images: not a folder: {args.images}")
        return args.images.resolve()
    images = settings.home.resolve() / "sample-catalogue"
    if not images.exists():
        print(f"Generating a synthetic sample catalogue in {images}\n"
              "  (drawn shapes, not photographs: it shows the machinery, not the quality;\n"
              "   use --images DIR for your own photos) ...")
        write_sample_catalogue(images)
    return images


def cmd_demo(args) -> None:
    if not args.no_serve:
        _serve_everything(args, demo=True)
        return
    with _engine(args) as engine:
        images = _demo_images(args, engine.settings)
        started = time.perf_counter()
        _print_ingest(engine.ingest(images, progress=True))  # stored, embedded, indexed
        version = engine.build_index()  # one fresh version, whatever the index held before
        print(f"index version {version} is current "
              f"({time.perf_counter() - started:.1f} s from folder to index)")
        query = next(iter(sorted(p for p in images.rglob("*.jpg"))), None) or next(
            (engine.settings.home / item.stored_path
             for item in engine.catalog.items_with_status("indexed", limit=1)), None)
        if query is None:
            raise CommandError("nothing was indexed; see the failures above")
        print(f"\nsearching with {query}:")
        _print_hits(engine.search(query, k=args.k), engine.settings.home)


def cmd_up(args) -> None:
    _serve_everything(args, demo=False)


def _serve_everything(args, *, demo: bool) -> None:
    """Start every process (:mod:`indexer.supervisor`); with ``demo``, index images through them."""
    import os
    import signal

    from indexer import supervisor

    settings = _settings(args)
    bind = args.bind or settings.api_bind
    host, port = supervisor.parse_bind(bind)
    supervisor.require_free_port(host, port)
    home = settings.home.resolve()
    images = _demo_images(args, settings) if demo else None
    env = {**os.environ, "LOOKALIKE_HOME": str(home), "LOOKALIKE_API_BIND": f"{host}:{port}"}
    url = f"http://{supervisor.browser_host(host)}:{port}/"
    mode = (f"broker {redact_url(settings.broker_url)}" if settings.broker_url
            else f"embedded: no servers, files under {home}")
    print(f"Starting Lookalike ({mode}); logs in {home / 'logs'}")

    def stop_on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    processes = supervisor.Supervisor(home / "logs", env)
    try:
        processes.start()
        job = _submit_demo(settings, images) if images is not None else None
        processes.wait(until=lambda: supervisor.answers(url + "healthz"))
        print(f"\nLookalike is running at {url}  (search: {url}  map: {url}map  "
              f"status: {url}status)\nPress Ctrl-C to stop.", flush=True)
        if job is not None:
            _follow_demo_job(processes, settings, job)
        processes.wait()
    except supervisor.ProcessExited as error:
        raise CommandError(f"{error}; the end of its log ({processes.log_path(error.name)}):\n"
                           f"{error.log_tail}") from None
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        processes.stop()


def _submit_demo(settings, images: Path) -> int:
    from indexer.catalog import Catalog
    from workers import client

    with Catalog(settings) as catalog:
        job = client.submit(catalog, settings, images)
    print(f"job {job.id} queued: index {job.total} images from {images}")
    return job.id


def _follow_demo_job(processes, settings, job_id: int) -> None:
    from indexer import jobs
    from indexer.catalog import FINISHED_JOB_STATUSES, Catalog

    with Catalog(settings) as catalog:
        shown = None

        def finished() -> bool:
            nonlocal shown
            state = jobs.progress(catalog, job_id, failures=5)
            line = f"job {job_id}: {state.job.status}, {state.summary()}"
            if line != shown:
                print(line, flush=True)
                shown = line
            return state.job.status in FINISHED_JOB_STATUSES

        processes.wait(until=finished, poll=1.0)
        state = jobs.progress(catalog, job_id, failures=5)
        for location, reason in state.failures:
            print(f"  failed: {location}: {reason}")
    print("indexed: search by photo in the browser; the map appears once it is computed.",
          flush=True)


def cmd_ingest(args) -> None:
    from indexer.jobs import is_url

    if not is_url(args.path):
        args.path = Path(args.path)
        if not args.path.exists():
            raise CommandError(f"no such file or folder: {args.path}")
    if args.wait and not args.background:
        raise CommandError("--wait goes with --background")
    if args.background:
        _ingest_background(args)
        return
    with _engine(args) as engine:  # the whole job here: download, store, embed, index
        _print_ingest(engine.ingest(args.path, progress=True, register=not args.once))


def _ingest_background(args) -> None:
    from indexer.catalog import Catalog
    from workers import client

    settings = _settings(args)
    with Catalog(settings) as catalog:
        job = client.submit(catalog, settings, args.path, register=not args.once)
        what = f"{job.total} images from" if job.planned else "a crawl of"
        print(f"job {job.id} queued: {what} {job.source} "
              f"(`lookalike jobs {job.id}` shows its progress)")
        if args.wait:
            state = _wait_for(catalog, job.id)
            _print_job(state, failures=20)
            if state.job.status != "done":
                raise CommandError(f"job {job.id} ended {state.job.status}: {state.job.message}")


def _wait_for(catalog, job_id: int, interval: float = 0.5):
    from indexer import jobs

    last = None
    while True:
        state = jobs.progress(catalog, job_id, failures=0)
        line = f"job {job_id} {state.job.status}: {state.summary()}"
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
        if state.job.finished:
            return jobs.progress(catalog, job_id, failures=20)
        time.sleep(interval)


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
        found = engine.search(
            args.image, k=args.k, label=args.label, product_id=args.product_id,
            min_score=args.min_score, group_by_product=args.group_by_product,
        )
        took_ms = (time.perf_counter() - started) * 1000
        if args.json:
            print(json.dumps({
                "query": str(args.image),
                "took_ms": round(took_ms, 1),
                "index_version": found.index_version,
                "model_version": found.model_version,
                "results": [hit.as_dict(engine.settings.home) for hit in found],
            }, indent=2))
        else:
            _print_hits(found, engine.settings.home)


def cmd_map(args) -> None:
    from indexer import maps
    from indexer.catalog import Catalog

    if args.png is not None and args.png.suffix.lower() != ".png":
        raise CommandError(f"--png: the file name must end in .png, got {args.png}")
    if not 64 <= args.size <= 8000:
        raise CommandError(f"--size: 64 to 8000 pixels, got {args.size}")
    settings = _settings(args)
    with Catalog(settings) as catalog:
        started = time.perf_counter()
        # Computed afresh and cached: what the API serves for that version from now on.
        data, _ = maps.ensure_map(settings, catalog, args.version, force=True,
                                  max_points=args.points, clusters=args.clusters)
    took = time.perf_counter() - started
    print(f"map of index version {data['index_version']}: {data['sampled']} of "
          f"{data['total']} vectors, {data['clusters']} clusters, {took:.1f} s "
          f"({data['method']})")
    if args.png is not None:
        path = maps.render_png(data, args.png, size=args.size, color_by=args.color)
        print(f"saved {path}")


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


def cmd_index_rollback(args) -> None:
    with _engine(args) as engine:
        before = engine.indexes.current_version()
        version = engine.indexes.rollback(expected_model_version=engine.model.version)
        manifest = engine.indexes.manifest(version)
        print(f"index version {version} is current again ({manifest.total} vectors); "
              f"left {before}")


def cmd_index_reindex(args) -> None:
    if args.background:
        from indexer.catalog import Catalog
        from workers import client

        settings = _settings(args)
        with Catalog(settings) as catalog:
            job = client.reindex(catalog, settings)
        print(f"re-index job {job.id} queued (`lookalike jobs {job.id}` shows it)")
        return
    from indexer import jobs
    from indexer.locks import reindex_lock_factory

    with _engine(args) as engine:
        started = time.perf_counter()
        job = jobs.new_reindex_job(engine.catalog)
        outcome = jobs.reindex(engine, job.id, lock=reindex_lock_factory(engine.settings),
                               progress_bar=True)
        if outcome.status != "done":
            raise CommandError(outcome.message)
        print(f"{outcome.message} ({time.perf_counter() - started:.1f} s)")


def cmd_worker(args) -> None:
    import os

    from workers.app import create_app
    from workers.wiring import PRELOAD_KEY

    settings = _settings(args)
    names = {"ingest": settings.queue_ingest, "embed": settings.queue_embed,
             "index": settings.queue_index}
    chosen = args.queues or list(WORKER_QUEUES)
    heavy = bool({"embed", "index"} & set(chosen))
    concurrency = args.concurrency or (1 if heavy else 4)
    if "index" in chosen and concurrency > 1 and args.pool != "solo":
        raise CommandError("the index queue takes one consumer: give it its own worker "
                           "with --concurrency 1 (e.g. --queues index)")
    os.environ["LOOKALIKE_HOME"] = str(settings.home)  # for anything the pool re-reads
    app = create_app(settings)
    app.conf[PRELOAD_KEY] = heavy
    node = args.name or f"{'-'.join(chosen)}@%h"
    app.worker_main([
        "worker", "--queues", ",".join(names[q] for q in chosen),
        "--concurrency", str(concurrency), "--pool", args.pool, "--hostname", node,
        "--loglevel", args.loglevel, "--without-gossip", "--without-mingle",
        "--without-heartbeat",
    ])


def cmd_serve(args) -> None:
    import os

    from search_api.serve import serve

    settings = _settings(args)
    os.environ["LOOKALIKE_HOME"] = str(settings.home)  # each worker process reads it again
    serve(settings, bind=args.bind, workers=args.workers, threads=args.threads)


def cmd_beat(args) -> None:
    import os

    from workers.app import create_app

    settings = _settings(args)
    app = create_app(settings)
    if not app.conf.beat_schedule:
        raise CommandError("nothing to schedule: LOOKALIKE_SWEEP_INTERVAL, "
                           "LOOKALIKE_RECRAWL_INTERVAL and LOOKALIKE_REINDEX_INTERVAL are all 0")
    os.environ["LOOKALIKE_HOME"] = str(settings.home)
    schedule = args.schedule or settings.home / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--schedule", str(schedule), "--loglevel", args.loglevel])


def cmd_jobs(args) -> None:
    from indexer import jobs
    from indexer.catalog import Catalog

    target = args.target
    settings = _settings(args)
    if target and target[0] == "retry":
        if len(target) != 2:
            raise CommandError("usage: lookalike jobs retry ID")
        job_id = _job_id(target[1])
        if args.inline:
            with _engine(args) as engine:
                chunks = jobs.retry_failed(engine.catalog, job_id)
                if not chunks:
                    print(f"job {job_id} has no failed URLs to retry")
                    return
                _print_job(jobs.run_inline(engine, job_id, progress_bar=True), failures=20)
            return
        from workers import client

        with Catalog(settings) as catalog:
            if catalog.get_job(job_id) is None:
                raise CommandError(f"no job {job_id}")
            queued = client.retry(catalog, settings, job_id)
        print(f"job {job_id}: {queued} chunks with failed URLs queued again" if queued else
              f"job {job_id} has no failed URLs to retry")
        return
    if len(target) > 1:
        raise CommandError("expected a job id, or `retry ID`")
    with Catalog(settings) as catalog:
        if target:
            job_id = _job_id(target[0])
            if catalog.get_job(job_id) is None:
                raise CommandError(f"no job {job_id}")
            state = jobs.progress(catalog, job_id, failures=args.limit)
            if args.json:
                print(json.dumps(state.as_dict(), indent=2))
            else:
                _print_job(state, failures=args.limit)
            return
        listed = list(jobs.iter_jobs_progress(catalog, limit=args.limit))
    if args.json:
        print(json.dumps([state.as_dict() for state in listed], indent=2))
        return
    if not listed:
        print("no jobs yet")
    for state in listed:
        job = state.job
        print(f"{job.id:>5}  {job.kind:<8} {job.status:<8} {job.created_at:%Y-%m-%d %H:%M}  "
              f"{state.summary()}  {job.source or ''}")


def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"a job id is a whole number, got {text!r}") from None
    if value < 1:
        raise CommandError(f"a job id is at least 1, got {value}")
    return value


def _print_job(state, failures: int = 20) -> None:
    job = state.job
    print(f"job {job.id} ({job.kind}) {job.status}: {state.summary()}")
    if job.source:
        print(f"  source:  {job.source}")
    if job.message and job.kind != "reindex":
        print(f"  message: {job.message}")
    for location, reason in state.failures[:failures]:
        print(f"  failed {location}: {reason}")
    if state.failed > len(state.failures[:failures]):
        print(f"  ... {state.failed - len(state.failures[:failures])} more "
              f"(`lookalike jobs {job.id} --limit N`)")


def cmd_models_use(args) -> None:
    from indexer.model.modeldir import use_model

    version = use_model(args.name, _settings(args))
    print(f"now using {args.name} ({version}); run `lookalike embed` and "
          "`lookalike index build` to re-index with it")


def _print_ingest(state) -> None:
    """An in-process ingest's job: what it did, and every failure with its reason."""
    _print_job(state, failures=20)


def _print_hits(hits, home: Path) -> None:
    """Rank, score, label, product, item id and title: the API's hit fields, one line each."""
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        item = hit.item
        print(f"{rank:3d}. {hit.score:.3f}  {item.label or '-':<24} "
              f"{item.product_id or '-':<24} {item.id[:12]}  {item.title or ''}".rstrip())
    if not getattr(hits, "complete", True):
        print(f"(fewer than {hits.k} found: the index or the filters left no more)")


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

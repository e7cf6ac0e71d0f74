"""The workers' commands: ``worker``, ``beat``, and ``up`` / ``demo`` (the whole system).

Declared in ``pyproject.toml`` under the ``lookalike.commands`` entry-point group;
:mod:`indexer.cli` calls :func:`register`. Celery loads only when a command runs,
so ``lookalike --help`` stays quick.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path

from indexer.cli.common import (
    CommandError,
    add_command,
    open_engine,
    positive_int,
    print_hits,
    print_ingest,
    settings_from,
)
from indexer.config import redact_url

WORKER_QUEUES = ("ingest", "embed", "index")


def register(subparsers) -> None:
    _add_worker(subparsers)
    beat = add_command(
        subparsers, "beat", "run the scheduler: re-crawl sources, re-index, sweep stalled jobs",
        cmd_beat,
        "lookalike beat",
        "LOOKALIKE_REINDEX_INTERVAL=3600 LOOKALIKE_RECRAWL_INTERVAL=0 lookalike beat",
    )
    beat.add_argument(
        "--schedule", type=Path,
        help="where beat keeps its state (default: HOME/celerybeat-schedule)",
    )
    beat.add_argument("--loglevel", "-l", default="INFO", help="DEBUG, INFO (default), WARNING")
    up = add_command(
        subparsers, "up",
        "start the API with the web UI, one worker per queue and beat; Ctrl-C stops all",
        cmd_up,
        "lookalike up", "LOOKALIKE_BROKER_URL=redis://127.0.0.1:6379/0 lookalike up -b :8080",
    )
    up.add_argument("--bind", "-b", help="host:port of the API and web UI "
                    "(default: $LOOKALIKE_API_BIND, 127.0.0.1:8000)")
    _add_demo(subparsers)


def _add_worker(subparsers) -> None:
    worker = add_command(
        subparsers, "worker", "run a background worker (Celery) for some or all of the queues",
        cmd_worker,
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
        "--concurrency", "-c", type=positive_int,
        help="pool processes (default: 1 with embed or index, else 4); index needs 1",
    )
    worker.add_argument(
        "--pool", "-P", choices=("prefork", "solo", "threads"), default="prefork",
        help="prefork (default: time limits enforced, a dead child's task requeued), solo, "
        "threads",
    )
    worker.add_argument("--name", "-n", help="node name (default: QUEUES@HOST)")
    worker.add_argument("--loglevel", "-l", default="INFO", help="DEBUG, INFO (default), WARNING")


def _add_demo(subparsers) -> None:
    demo = add_command(
        subparsers, "demo",
        "start the whole system (API, web UI, workers, beat) on this machine and index "
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
    demo.add_argument("-k", type=positive_int, default=5,
                      help="with --no-serve: results to show (default 5)")


def _queue_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKER_QUEUES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(WORKER_QUEUES)}; got {text!r}"
        )
    return list(dict.fromkeys(names))


def cmd_worker(args) -> None:
    from workers.app import create_app
    from workers.wiring import PRELOAD_KEY

    settings = settings_from(args)
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


def cmd_beat(args) -> None:
    from workers.app import create_app

    settings = settings_from(args)
    app = create_app(settings)
    if not app.conf.beat_schedule:
        raise CommandError("nothing to schedule: LOOKALIKE_SWEEP_INTERVAL, "
                           "LOOKALIKE_RECRAWL_INTERVAL and LOOKALIKE_REINDEX_INTERVAL are all 0")
    os.environ["LOOKALIKE_HOME"] = str(settings.home)
    schedule = args.schedule or settings.home / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--schedule", str(schedule), "--loglevel", args.loglevel])


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
    with open_engine(args) as engine:
        images = _demo_images(args, engine.settings)
        started = time.perf_counter()
        print_ingest(engine.ingest(images, progress=True))  # stored, embedded, indexed
        version = engine.build_index()  # one fresh version, whatever the index held before
        print(f"index version {version} is current "
              f"({time.perf_counter() - started:.1f} s from folder to index)")
        query = next(iter(sorted(p for p in images.rglob("*.jpg"))), None) or next(
            (engine.settings.home / item.stored_path
             for item in engine.catalog.items_with_status("indexed", limit=1)), None)
        if query is None:
            raise CommandError("nothing was indexed; see the failures above")
        print(f"\nsearching with {query}:")
        print_hits(engine.search(query, k=args.k), engine.settings.home)


def cmd_up(args) -> None:
    _serve_everything(args, demo=False)


def _serve_everything(args, *, demo: bool) -> None:
    """Start every process (:mod:`workers.supervisor`); with ``demo``, index images through them."""
    from workers import supervisor

    settings = settings_from(args)
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

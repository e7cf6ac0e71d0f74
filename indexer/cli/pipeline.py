"""The pipeline commands: ``ingest``, ``embed``, ``search`` and ``map``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from indexer.cli.common import (
    CommandError,
    add_command,
    job_queue,
    open_engine,
    positive_int,
    print_hits,
    print_ingest,
    print_job,
    settings_from,
)


def register(subparsers) -> None:
    _add_ingest(subparsers)
    embed = add_command(
        subparsers, "embed", "embed every stored image the current model has not embedded yet",
        cmd_embed,
        "lookalike embed", "LOOKALIKE_BATCH_SIZE=64 lookalike embed",
    )
    embed.add_argument("--limit", type=positive_int, help="embed at most this many items")
    _add_search(subparsers)
    _add_map(subparsers)


def _add_ingest(subparsers) -> None:
    ingest = add_command(
        subparsers, "ingest",
        "take in the images of a folder, a manifest (CSV / JSON Lines) or a site: "
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


def _add_search(subparsers) -> None:
    search = add_command(
        subparsers, "search", "find the catalogue images that look most like IMAGE", cmd_search,
        "lookalike search query.jpg", "lookalike search query.jpg -k 20 --json",
        "lookalike search query.jpg --label shoes --min-score 0.5 --group-by-product",
        "lookalike search shelf.jpg --box 120,40,380,300   # one product of a busy photo",
    )
    search.add_argument("image", type=Path, help="query image file")
    search.add_argument("-k", type=positive_int, default=10,
                        help="results (default 10; at most LOOKALIKE_API_SEARCH_MAX_K)")
    search.add_argument("--label", help="only items with this label")
    search.add_argument("--product-id", help="only items of this product")
    search.add_argument("--min-score", type=float, help="only hits scoring at least this (-1 to 1)")
    search.add_argument("--group-by-product", action="store_true",
                        help="one hit per product (its best-scoring image)")
    search.add_argument("--box", metavar="X0,Y0,X1,Y1",
                        help="search by this region of the photo: pixels of the image as "
                        "displayed, x0,y0 top-left, x1,y1 bottom-right, at least 16x16")
    search.add_argument("--json", action="store_true", help="print a JSON object")


def _add_map(subparsers) -> None:
    catalogue_map = add_command(
        subparsers, "map",
        "compute the t-SNE map of an index version here, cache it, optionally draw it",
        cmd_map,
        "lookalike map                       # the current version; the API serves it",
        "lookalike map --points 20000 --clusters 30",
        "lookalike map --png map.png --color label",
    )
    catalogue_map.add_argument("--version", help="index version (default: the current one)")
    catalogue_map.add_argument("--points", type=positive_int,
                               help="vectors to sample (default: $LOOKALIKE_MAP_MAX_POINTS, 5000)")
    catalogue_map.add_argument("--clusters", type=positive_int,
                               help="k-means clusters (default: about sqrt(points/2))")
    catalogue_map.add_argument("--png", type=Path, metavar="PATH",
                               help="also save a scatter plot (points and colours, no photos)")
    catalogue_map.add_argument("--color", choices=("cluster", "label"),
                               help="colour of the PNG's dots (default: label when items have "
                               "labels, else cluster)")
    catalogue_map.add_argument("--size", type=positive_int, default=1000,
                               help="the PNG's width and height in pixels (default 1000)")


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
    with open_engine(args) as engine:  # the whole job here: download, store, embed, index
        print_ingest(engine.ingest(args.path, progress=True, register=not args.once))


def _ingest_background(args) -> None:
    from indexer.catalog import Catalog

    queue = job_queue("--background", "run it here with --inline")  # before anything is recorded
    settings = settings_from(args)
    with Catalog(settings) as catalog:
        job = queue.submit(catalog, settings, args.path, register=not args.once)
        what = f"{job.total} images from" if job.planned else "a crawl of"
        print(f"job {job.id} queued: {what} {job.source} "
              f"(`lookalike jobs {job.id}` shows its progress)")
        if args.wait:
            state = _wait_for(catalog, job.id)
            print_job(state, failures=20)
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
    with open_engine(args) as engine:
        report = engine.embed(progress=True, limit=args.limit)
        print(f"embedded {report.embedded} items with {report.model_version}; "
              f"{len(report.failed)} failed")
        for item_id, reason in report.failed:
            print(f"  failed {item_id[:12]}: {reason}")


def cmd_search(args) -> None:
    if not args.image.is_file():
        raise CommandError(f"no such image file: {args.image}")
    with open_engine(args) as engine:
        started = time.perf_counter()
        found = engine.search(
            args.image, k=args.k, label=args.label, product_id=args.product_id,
            min_score=args.min_score, group_by_product=args.group_by_product, box=args.box,
        )
        took_ms = (time.perf_counter() - started) * 1000
        if args.json:
            print(json.dumps({
                "query": str(args.image),
                "box": found.box,
                "took_ms": round(took_ms, 1),
                "index_version": found.index_version,
                "model_version": found.model_version,
                "results": [hit.as_dict(engine.settings.home) for hit in found],
            }, indent=2))
        else:
            print_hits(found, engine.settings.home)


def cmd_map(args) -> None:
    from indexer import maps
    from indexer.catalog import Catalog

    if args.png is not None and args.png.suffix.lower() != ".png":
        raise CommandError(f"--png: the file name must end in .png, got {args.png}")
    if not 64 <= args.size <= 8000:
        raise CommandError(f"--size: 64 to 8000 pixels, got {args.size}")
    settings = settings_from(args)
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

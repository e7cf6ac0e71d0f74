"""``lookalike index build | stats | rollback | reindex``."""

from __future__ import annotations

import argparse
import json
import time

from indexer.cli.common import (
    CommandError,
    add_command,
    examples,
    job_queue,
    open_engine,
    positive_int,
    settings_from,
)


def register(subparsers) -> None:
    index = add_command(
        subparsers, "index", "build or inspect the search index", None,
        "lookalike index build --shards 4",
    )
    actions = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = _action(
        actions, "build", cmd_index_build,
        "build a new index version from the vector store and switch to it",
        "Build a new index version from the vector store and switch to it.",
        "lookalike index build", "lookalike index build --shards 4 --factory IVF1024,Flat",
    )
    build.add_argument("--shards", type=positive_int, help="number of shards (default: setting)")
    build.add_argument(
        "--factory", help="'auto' (chosen by size) or a faiss factory string, e.g. IVF1024,Flat"
    )
    stats = _action(
        actions, "stats", cmd_index_stats,
        "show the current index version and catalog counts",
        "Show the current index version and catalog counts.",
        "lookalike index stats", "lookalike index stats --json",
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    _action(
        actions, "rollback", cmd_index_rollback,
        "switch back to the index version that was current before this one",
        "Switch CURRENT back to the previously active index version (repeat to go "
        "further back). Versions that fail verification or hold another model are skipped.",
        "lookalike index rollback",
    )
    reindex = _action(
        actions, "reindex", cmd_index_reindex,
        "embed what the current model lacks, rebuild the index, switch to it",
        "Re-index: embed every item the current model has not embedded (all of "
        "them after `lookalike models use`), build a new index version from the vector store, "
        "switch to it atomically and prune old versions (the previous ones stay for "
        "`lookalike index rollback`). Only one re-index runs at a time.",
        "lookalike index reindex", "lookalike index reindex --background",
    )
    reindex.add_argument(
        "--background", action="store_true", help="queue it for the index worker instead"
    )


def _action(actions, name, handler, help_text, description, *example_lines):
    parser = actions.add_parser(
        name, help=help_text, description=description, epilog=examples(*example_lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def cmd_index_build(args) -> None:
    with open_engine(args) as engine:
        started = time.perf_counter()
        version = engine.build_index(shards=args.shards, factory=args.factory)
        print(f"index version {version} is current ({time.perf_counter() - started:.1f} s)")


def cmd_index_stats(args) -> None:
    with open_engine(args) as engine:
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


def cmd_index_rollback(args) -> None:
    with open_engine(args) as engine:
        before = engine.indexes.current_version()
        version = engine.indexes.rollback(expected_model_version=engine.model.version)
        manifest = engine.indexes.manifest(version)
        print(f"index version {version} is current again ({manifest.total} vectors); "
              f"left {before}")


def cmd_index_reindex(args) -> None:
    if args.background:
        from indexer.catalog import Catalog

        queue = job_queue("--background", "re-index here without --background")
        settings = settings_from(args)
        with Catalog(settings) as catalog:
            job = queue.reindex(catalog, settings)
        print(f"re-index job {job.id} queued (`lookalike jobs {job.id}` shows it)")
        return
    from indexer import jobs
    from indexer.locks import reindex_lock_factory

    with open_engine(args) as engine:
        started = time.perf_counter()
        job = jobs.new_reindex_job(engine.catalog)
        outcome = jobs.reindex(engine, job.id, lock=reindex_lock_factory(engine.settings),
                               progress_bar=True)
        if outcome.status != "done":
            raise CommandError(outcome.message)
        print(f"{outcome.message} ({time.perf_counter() - started:.1f} s)")

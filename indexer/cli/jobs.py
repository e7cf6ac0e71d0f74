"""``lookalike jobs [ID] [--json]`` and ``lookalike jobs retry ID [--inline]``."""

from __future__ import annotations

import json

from indexer.cli.common import (
    CommandError,
    add_command,
    job_id,
    job_queue,
    open_engine,
    positive_int,
    print_job,
    settings_from,
)


def register(subparsers) -> None:
    jobs = add_command(
        subparsers, "jobs",
        "show jobs (ingest, re-crawl, re-index): progress, counts, failures; retry",
        cmd_jobs,
        "lookalike jobs                  # the latest jobs",
        "lookalike jobs 12 --json        # one job, its counts and failed URLs with reasons",
        "lookalike jobs retry 12         # queue job 12's failed URLs again (only those)",
        "lookalike jobs retry 12 --inline",
    )
    jobs.add_argument("target", nargs="*", metavar="ID | retry ID",
                      help="a job id to show, or `retry ID`")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument("--limit", type=positive_int, default=20,
                      help="jobs to list (default 20); failures to show for one job (default 20)")
    jobs.add_argument("--inline", action="store_true",
                      help="with retry: fetch, embed and index here instead of in the workers")


def cmd_jobs(args) -> None:
    target = args.target
    if target and target[0] == "retry":
        if len(target) != 2:
            raise CommandError("usage: lookalike jobs retry ID")
        _retry(args, job_id(target[1]))
        return
    if len(target) > 1:
        raise CommandError("expected a job id, or `retry ID`")
    if target:
        _show_one(args, job_id(target[0]))
    else:
        _list(args)


def _retry(args, job: int) -> None:
    from indexer import jobs
    from indexer.catalog import Catalog

    if args.inline:
        with open_engine(args) as engine:
            chunks = jobs.retry_failed(engine.catalog, job)
            if not chunks:
                print(f"job {job} has no failed URLs to retry")
                return
            print_job(jobs.run_inline(engine, job, progress_bar=True), failures=20)
        return
    settings = settings_from(args)
    with Catalog(settings) as catalog:
        if catalog.get_job(job) is None:
            raise CommandError(f"no job {job}")
        queued = job_queue("jobs retry", "retry here with --inline").retry(catalog, settings, job)
    print(f"job {job}: {queued} chunks with failed URLs queued again" if queued else
          f"job {job} has no failed URLs to retry")


def _show_one(args, job: int) -> None:
    from indexer import jobs
    from indexer.catalog import Catalog

    with Catalog(settings_from(args)) as catalog:
        if catalog.get_job(job) is None:
            raise CommandError(f"no job {job}")
        state = jobs.progress(catalog, job, failures=args.limit)
    if args.json:
        print(json.dumps(state.as_dict(), indent=2))
    else:
        print_job(state, failures=args.limit)


def _list(args) -> None:
    from indexer import jobs
    from indexer.catalog import Catalog

    with Catalog(settings_from(args)) as catalog:
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

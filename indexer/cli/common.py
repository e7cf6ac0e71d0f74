"""What every command module shares: the error type, option types, help layout, openers,
and the printed forms of reports, hits and jobs.

Shells' command modules (``workers.cli``, ``search_api.cli``) use these too, so
every ``lookalike`` command has help with examples and fails the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from indexer.config import load_settings


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_command(
    subparsers, name: str, help_text: str, handler: Callable | None, *example_lines: str
) -> argparse.ArgumentParser:
    """One ``lookalike NAME`` command whose ``--help`` ends with examples."""
    sub = subparsers.add_parser(
        name, help=help_text, description=help_text, epilog=examples(*example_lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def global_overrides(args) -> dict:
    """The global options given (``--home``, ``--runtime``), as settings overrides."""
    overrides = {}
    if getattr(args, "home", None):
        overrides["home"] = args.home
    if getattr(args, "runtime", None):
        overrides["runtime"] = args.runtime
    return overrides


def settings_from(args):
    """Settings from the environment, with ``--home`` / ``--runtime`` over ``LOOKALIKE_*``."""
    return load_settings(**global_overrides(args))


def open_engine(args):
    from indexer.engine import Lookalike

    return Lookalike.open(**global_overrides(args))


def job_queue(what: str, instead: str):
    """The installed job queue, or a one-line :class:`CommandError`: what needed it, and
    what to do ``instead`` without one."""
    from indexer.queueing import NoJobQueue, load_job_queue

    try:
        return load_job_queue()
    except NoJobQueue as error:
        raise CommandError(f"{what}: {error}; or {instead}") from None


def job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"a job id is a whole number, got {text!r}") from None
    if value < 1:
        raise CommandError(f"a job id is at least 1, got {value}")
    return value


def print_ingest(state) -> None:
    """An in-process ingest's job: what it did, and every failure with its reason."""
    print_job(state, failures=20)


def print_hits(hits, home: Path) -> None:
    """Rank, score, label, product, item id and title: the API's hit fields, one line each."""
    if not hits:
        print("no results")
    for rank, hit in enumerate(hits, start=1):
        item = hit.item
        print(f"{rank:3d}. {hit.score:.3f}  {item.label or '-':<24} "
              f"{item.product_id or '-':<24} {item.id[:12]}  {item.title or ''}".rstrip())
    if not getattr(hits, "complete", True):
        print(f"(fewer than {hits.k} found: the index or the filters left no more)")


def print_job(state, failures: int = 20) -> None:
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

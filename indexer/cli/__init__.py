"""The ``lookalike`` command line: a thin layer over :mod:`indexer.engine`.

The core owns the pipeline commands, one module per group (:mod:`.pipeline`,
:mod:`.explain`, :mod:`.index`, :mod:`.training`, :mod:`.jobs`), each with a
``register(subparsers)``.
The shells add theirs through the ``lookalike.commands`` entry-point group (a
``register(subparsers)`` callable each, as Flask's CLI loads ``flask.commands``):
``workers`` brings ``worker``, ``beat``, ``up`` and ``demo``, ``search_api``
brings ``serve``. A shell that fails to load is named in a one-line warning and
the core commands still work.

Output meant for people goes to stdout; progress bars and logs go to stderr.
Bad input ends the command with a one-line reason and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from indexer import plugins
from indexer.cli import explain, index, jobs, pipeline, training
from indexer.cli.common import CommandError, examples
from indexer.config import RUNTIMES as RUNTIME_CHOICES
from indexer.index.errors import IndexStoreError
from indexer.vectors import VectorStoreError

__all__ = ["COMMANDS_GROUP", "CommandError", "build_parser", "main"]

COMMANDS_GROUP = "lookalike.commands"
CORE_GROUPS = (pipeline, explain, index, training, jobs)
EXIT_BAD_INPUT = 2


def build_parser(
    shells: Iterable[metadata.EntryPoint] | None = None,
) -> argparse.ArgumentParser:
    """The whole parser: the core's commands, then each shell's (``shells`` default to the
    installed ``lookalike.commands`` entry points)."""
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Query-by-image search for product catalogues.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples(
            "lookalike ingest photos/     # store, embed and index the images",
            "lookalike search query.jpg -k 5",
            "LOOKALIKE_HOME=/srv/lookalike lookalike index stats",
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--home", type=Path, help="data directory (default: $LOOKALIKE_HOME or ./lookalike-data)"
    )
    parser.add_argument(
        "--runtime", choices=RUNTIME_CHOICES,
        help="inference runtime (default: $LOOKALIKE_RUNTIME or auto, the fastest measured here)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in CORE_GROUPS:
        group.register(commands)
    _add_shell_commands(commands, plugins.entry_points(COMMANDS_GROUP) if shells is None
                        else shells)
    return parser


def _add_shell_commands(commands, shells: Iterable[metadata.EntryPoint]) -> None:
    loaded, failed = plugins.load_all(shells)
    for point, register in loaded:
        try:
            register(commands)
        except Exception as error:  # a shell's bug must not take the core commands down
            failed.append(plugins.LoadFailure(point.name, point.value, error))
    for failure in failed:
        print(f"lookalike: warning: commands not loaded from {failure}", file=sys.stderr)


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

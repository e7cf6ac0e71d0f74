"""``lookalike serve``: the API (with whatever web extensions are installed) under gunicorn.

Declared in ``pyproject.toml`` under the ``lookalike.commands`` entry-point group;
:mod:`indexer.cli` calls :func:`register`. gunicorn loads only when it runs.
"""

from __future__ import annotations

import os

from indexer.cli.common import add_command, positive_int, settings_from


def register(subparsers) -> None:
    serve = add_command(
        subparsers, "serve",
        "serve the HTTP search API (gunicorn; the model and index load at start)", cmd_serve,
        "LOOKALIKE_API_KEY=$(openssl rand -hex 24) lookalike serve   # http://127.0.0.1:8000",
        "lookalike serve --bind 0.0.0.0:8080 --workers 4 --threads 8",
        "curl -F image=@query.jpg 'http://127.0.0.1:8000/api/v1/search?k=5'",
    )
    serve.add_argument("--bind", "-b", help="host:port (default: $LOOKALIKE_API_BIND, "
                       "127.0.0.1:8000)")
    serve.add_argument("--workers", "-w", type=positive_int,
                       help="processes (default: $LOOKALIKE_API_WORKERS, 2)")
    serve.add_argument("--threads", type=positive_int,
                       help="request threads per process (default: $LOOKALIKE_API_THREADS, 4)")


def cmd_serve(args) -> None:
    from search_api.serve import serve

    settings = settings_from(args)
    os.environ["LOOKALIKE_HOME"] = str(settings.home)  # each worker process reads it again
    serve(settings, bind=args.bind, workers=args.workers, threads=args.threads)

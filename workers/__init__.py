"""Lookalike's Celery workers: fetch, store, embed and index in the background.

Thin by design: every task calls :mod:`indexer.jobs` with ids (a job id, a chunk
number), never image bytes or vectors. Other code queues work through
:mod:`workers.client`, by task name.

Running them (``deploy/Procfile`` does this with honcho)::

    lookalike worker --queues ingest --concurrency 4   # downloads: I/O bound
    lookalike worker --queues embed                    # the model, loaded once per process
    lookalike worker --queues index                    # the single index writer
    lookalike beat                                     # re-crawl, re-index, sweep
    lookalike ingest catalogue.csv --background --wait
    lookalike jobs [ID] [--json] | lookalike jobs retry ID

``lookalike worker`` alone serves all three queues in one process. Broker and
results: Redis with ``LOOKALIKE_BROKER_URL=redis://…``, else an embedded transport
(files under ``LOOKALIKE_HOME/broker``) that needs no server. The schedule and the
limits are settings (``indexer.config``, ``LOOKALIKE_*``): ``RECRAWL_INTERVAL``,
``REINDEX_INTERVAL``, ``SWEEP_INTERVAL`` (seconds, 0 = off), ``STALLED_AFTER``,
``TASK_TIME_LIMIT`` and ``REINDEX_TIME_LIMIT`` (below ``BROKER_VISIBILITY_TIMEOUT``),
``INGEST_CHUNK_SIZE``, ``INDEX_KEEP_VERSIONS``, ``CRAWL_MAX_PAGES``, ``CRAWL_MAX_DEPTH``.

What survives what:

* a pool process killed mid-task (e.g. out of memory): the worker puts its task
  back on the queue (late acknowledgement, reject on worker lost), on both brokers;
* a whole worker killed: with Redis the unacknowledged task comes back after the
  visibility timeout; the embedded transport cannot give it back, so the sweeper
  (beat, and each worker soon after it starts) queues the work of stalled jobs
  again from the catalog;
* Redis restarted without its data: workers reconnect, the sweeper re-queues;
* a task delivered twice: every stage is idempotent, one vector per item;
* two re-indexes at once: the second is recorded as skipped ("already running");
  an ``flock`` per machine and a Redis lock across machines;
* a crash between writing an index version and switching to it: the old version
  stays current; the next re-index writes another and prunes the orphan.

``celery -A workers worker`` also works: ``workers.celery`` (built on first use,
from the environment) is an app configured like ``lookalike worker``'s.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "celery":
        from workers.app import create_app

        globals()[name] = built = create_app()
        return built
    raise AttributeError(f"module 'workers' has no attribute {name!r}")

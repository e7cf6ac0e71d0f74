"""Task names and the queue each one goes to: what the app and every sender agree on.

A leaf module (it imports only the settings), so the app, the tasks, the worker
signals and the senders (:mod:`workers.client`, the HTTP API through it) all
import it and none of them imports another in a circle.
"""

from __future__ import annotations

from indexer.config import Settings

TASK_NAMES = {
    "start": "lookalike.start_job",
    "fetch": "lookalike.fetch_chunk",
    "embed": "lookalike.embed_chunk",
    "index": "lookalike.index_job",
    "reindex": "lookalike.reindex",
    "deletions": "lookalike.apply_deletions",
    "recrawl": "lookalike.recrawl",
    "sweep": "lookalike.sweep",
    "map": "lookalike.map",
}


def routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Which queue each task goes to: fetching is I/O, embedding needs the model, one writer."""
    return {
        TASK_NAMES["start"]: {"queue": settings.queue_ingest},
        TASK_NAMES["fetch"]: {"queue": settings.queue_ingest},
        TASK_NAMES["recrawl"]: {"queue": settings.queue_ingest},
        TASK_NAMES["sweep"]: {"queue": settings.queue_ingest},
        TASK_NAMES["embed"]: {"queue": settings.queue_embed},
        TASK_NAMES["index"]: {"queue": settings.queue_index},
        TASK_NAMES["reindex"]: {"queue": settings.queue_index},
        TASK_NAMES["deletions"]: {"queue": settings.queue_index},
        # t-SNE takes minutes on a large catalogue: compute work, never on the single writer
        TASK_NAMES["map"]: {"queue": settings.queue_embed},
    }

"""Lookalike's core library: images in, a searchable sharded faiss index out.

``from indexer import Lookalike`` is the public entry point (see
:mod:`indexer.engine`); it is imported lazily so that light modules (settings,
image checks) do not pull in torch and faiss.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in {"Lookalike", "ItemQuery", "SearchHit", "SearchResult", "EmbedReport",
                "NoIndexError"}:  # fmt: skip
        from indexer import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")

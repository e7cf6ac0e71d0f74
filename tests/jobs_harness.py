"""Helpers for the job tests: settings with the tiny model, served images, manifests.

A real HTTP server (:mod:`local_http`) serves generated images; the model is
timm's tiny ``test_efficientnet`` with random weights (milliseconds per image).
"""

from __future__ import annotations

import csv
from pathlib import Path

import faiss
import images_factory
import numpy as np
from local_http import LocalServer

from indexer.config import Settings
from indexer.engine import Lookalike


def serve_images(server: LocalServer, seeds, prefix: str = "/img") -> list[str]:
    urls = []
    for seed in seeds:
        server.serve(f"{prefix}/{seed}.jpg", images_factory.jpeg_bytes(seed=seed))
        urls.append(server.url(f"{prefix}/{seed}.jpg"))
    return urls


def write_manifest(path: Path, urls: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_url", "product_id"])
        for number, url in enumerate(urls):
            writer.writerow([url, f"p{number}"])
    return path


def make_settings(tmp_path: Path, tiny_model: Path, **overrides) -> Settings:
    values = dict(
        home=tmp_path / "home", model=str(tiny_model), device="cpu", precision="fp32",
        loader_workers=0, batch_size=16, fetch_allow_networks=["127.0.0.0/8"],
        fetch_per_host_interval=0, fetch_respect_robots=False, fetch_retries=0,
        ingest_chunk_size=8, ingest_threads=2, fetch_max_bytes=200_000, _env_file=None,
    )
    values.update(overrides)
    return Settings(**values)


def vector_counts(engine: Lookalike) -> tuple[int, int, int]:
    """(live vectors in the store, vectors in the current index, indexed catalog items)."""
    ids, _ = engine.vectors.load()
    assert len(np.unique(ids)) == len(ids)
    loaded = engine.indexes.load()
    index_ids = np.concatenate([faiss.vector_to_array(shard.id_map) for shard in loaded.shards])
    assert len(np.unique(index_ids)) == len(index_ids), "a vector id appears twice in the index"
    assert set(index_ids) == set(ids)
    return len(ids), loaded.ntotal, engine.catalog.counts()["indexed"]


def product_page(n: int, image: str) -> bytes:
    return (
        f'<!DOCTYPE html><html><head><title>Product {n}</title>'
        f'<meta property="og:type" content="product"><meta property="og:image" content="{image}">'
        f"</head><body><h1>Product {n}</h1><a href=\"/\">home</a></body></html>"
    ).encode()


def build_site(server: LocalServer, products: dict[int, int]) -> None:
    """``products``: number -> image seed; the home page links every product page."""
    links = "".join(f'<a href="/p/{n}.html">product {n}</a>' for n in products)
    server.serve("/", f"<!DOCTYPE html><html><body>{links}</body></html>".encode(),
                 "text/html")
    for n, seed in products.items():
        server.serve(f"/p/{n}.html", product_page(n, f"/img/p{n}.jpg"), "text/html")
        server.serve(f"/img/p{n}.jpg", images_factory.jpeg_bytes(seed=seed))

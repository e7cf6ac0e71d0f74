"""Index benchmark: recall@10, latency and memory of Flat, IVF-Flat, IVF-PQ and 'auto'.

Vectors are shaped like real product embeddings, not drawn from a Gaussian mixture.
From a file of real embeddings with class labels (``--embeddings``: an .npz with
float32 ``vectors`` [n, d], L2-normalised, and int ``labels`` [n]):

* every real class gives a centre (its mean vector) and every real photo an offset
  (its vector minus its class centre): real within-class variation;
* a synthetic product is a random convex mixture of 2-3 real class centres
  (Dirichlet weights, alpha 0.3: usually one class dominates, as a product mostly
  resembles one kind of thing): its direction is the renormalised mixture, its
  length the same mixture of the real centres' lengths, so products sit as far
  from the origin as real classes;
* each of a product's points (2-6 of them) is the product centre plus an offset
  made of real offsets: half of its variance shared by the product's points (the
  same item photographed again looks alike), half fresh per point. Each real
  offset is blended with a fraction (±0.5) of a second one and its length jittered
  (±15 %), so offsets reused across a million points are never exact copies; the
  sum is rescaled to a real offset's length and L2-normalised.

The knobs were set so that, at the real set's size, generated points match the
real photos' neighbourhoods: similarity to the 1st/10th/100th neighbour, to a
random point, and IVF recall curves (the script prints this comparison first).

Queries are held-out points of catalogued products (a shopper's new photo of a
product in the catalogue). Ground truth is exact top-10 by ``faiss.knn``
(inner product, batched) at each index's own dimension: an index that projects the
vectors (``PCA256,L2norm,…``, 'auto' beyond ``flat_threshold``) is measured against
brute force over the same projection of every vector (its own, read back from its
shard), as a Flat index at that dimension would answer; the table also shows each
index's recall against exact search over the full vectors (``full-d``). Each index is
built by the engine's own index store (``IndexStore.from_settings``) and searched by
its ``ShardedSearcher``; the 'auto' row uses ``factory=None``, i.e. the settings'
default, exactly as the engine does. For
each index: build time, bytes per vector (shard files / n), the smallest nprobe
in 1, 2, 4, ..., 256 whose recall@10 reaches the target (0.95), refined by
bisection towards the previous power of two (``--no-refine``: off), and single-query
p50/p99 latency at that nprobe, timed in rounds alternating with exact Flat's
(shared cores: both see the same load).

    .venv/bin/python tests/bench/bench_index.py --embeddings grocery.npz             # 1M
    .venv/bin/python tests/bench/bench_index.py --embeddings grocery.npz --n 50000   # smoke
    .venv/bin/python tests/bench/bench_index.py --write-standin standin.npz   # no real file yet

Memory: the base vectors are one copy (n x d x 4 bytes: 5.1 GB at 1M x 1280),
kept in a memory-mapped file in the work directory, so their pages are page
cache the kernel can reclaim; a build holds one index beside them (IVF lists grow
by doubling: up to ~1.5 copies). All indexes are built first; then the base is
dropped, and exact Flat stays loaded while each other index is loaded, measured
and freed in turn: at most two loaded indexes, about 10 GB at 1M x 1280. Index
files are deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(REPO))

from indexer.config import Settings  # noqa: E402
from indexer.index.factory import (  # noqa: E402
    flat_spec,
    ivf_flat_spec,
    ivf_pq_spec,
)
from indexer.index.searcher import ShardedSearcher  # noqa: E402
from indexer.index.store import IndexStore  # noqa: E402

log = logging.getLogger("bench_index")
K = 10
CHUNK = 16_384  # rows per generation step: a few x 84 MB temporaries at d=1280


# -- data shaped like real embeddings -------------------------------------------


@dataclass
class RealShape:
    """Class centres and per-photo offsets taken from real labelled embeddings."""

    centres: np.ndarray  # [classes, d], class means (not unit length)
    offsets: np.ndarray  # [photos, d], photo minus its class mean
    vectors: np.ndarray  # [photos, d], the real embeddings themselves

    @classmethod
    def from_file(cls, path: Path) -> RealShape:
        with np.load(path) as data:
            vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
            labels = np.asarray(data["labels"])  # ints or class names (lookalike evaluate)
        if vectors.ndim != 2 or labels.shape != (len(vectors),):
            raise SystemExit(f"{path}: need vectors [n, d] and labels [n]")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1, atol=1e-3):
            log.warning("%s: vectors are not L2-normalised; normalising", path)
            faiss.normalize_L2(vectors)
        classes, index = np.unique(labels, return_inverse=True)
        centres = np.zeros((len(classes), vectors.shape[1]), np.float64)
        np.add.at(centres, index, vectors)
        centres /= np.bincount(index)[:, None]
        centres = centres.astype(np.float32)
        offsets = vectors - centres[index]
        log.info(
            "real embeddings %s: %d photos, %d classes, dim %d; |centre| %.3f, |offset| %.3f",
            path,
            len(vectors),
            len(classes),
            vectors.shape[1],
            float(np.linalg.norm(centres, axis=1).mean()),
            float(np.linalg.norm(offsets, axis=1).mean()),
        )
        return cls(centres=centres, offsets=offsets, vectors=vectors)

    @property
    def dim(self) -> int:
        return self.centres.shape[1]


@dataclass(frozen=True)
class Shape:
    """Knobs of the generator (see the module docstring); defaults match the real data."""

    alpha: float = 0.3  # Dirichlet concentration of the class-centre mixture weights
    product_share: float = 0.5  # share of offset variance common to a product's points
    blend: float = 0.5  # a second real offset mixed in with weight in [-blend, blend]
    jitter: float = 0.15  # offset length scaled by 1 +- jitter


def make_products(
    real: RealShape, n_products: int, shape: Shape, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Product centres from convex mixtures of 2-3 real centres, and per-product offsets.

    Returns unit directions, lengths (the same mixture of the real centres' lengths)
    and one real-offset-shaped vector per product, shared by all its points.
    """
    n_classes = len(real.centres)
    lengths = np.linalg.norm(real.centres, axis=1)
    mix = rng.integers(2, 4, n_products)  # 2 or 3 classes each
    picks = np.empty((n_products, 3), np.int64)  # 3 distinct classes per product
    for start in range(0, n_products, CHUNK):
        stop = min(start + CHUNK, n_products)
        keys = rng.random((stop - start, n_classes))
        picks[start:stop] = np.argpartition(keys, 3, axis=1)[:, :3]
    weights = rng.dirichlet(np.full(3, shape.alpha), n_products).astype(np.float32)
    weights[mix == 2, 2] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    directions = np.zeros((n_products, real.dim), np.float32)
    offsets = np.empty((n_products, real.dim), np.float32)
    for start in range(0, n_products, CHUNK):
        stop = min(start + CHUNK, n_products)
        for j in range(3):
            directions[start:stop] += (
                weights[start:stop, j, None] * real.centres[picks[start:stop, j]]
            )
        offsets[start:stop] = real_offsets(real, stop - start, shape, rng)
    product_lengths = (weights * lengths[picks]).sum(axis=1).astype(np.float32)
    faiss.normalize_L2(directions)
    return directions, product_lengths, offsets


def real_offsets(real: RealShape, size: int, shape: Shape, rng: np.random.Generator):
    """Real photo offsets, each blended with a fraction of another and rescaled.

    A million points reuse a few thousand real offsets; the blend and the length
    jitter keep any two of them from being exact copies.
    """
    n_photos = len(real.offsets)
    first = real.offsets[rng.integers(0, n_photos, size)]
    second = real.offsets[rng.integers(0, n_photos, size)]
    offset = first + rng.uniform(-shape.blend, shape.blend, (size, 1)).astype(np.float32) * second
    target = np.linalg.norm(first, axis=1, keepdims=True)
    target *= rng.uniform(1 - shape.jitter, 1 + shape.jitter, (size, 1)).astype(np.float32)
    return offset * (target / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-12))


def make_points(
    real: RealShape,
    products: tuple[np.ndarray, np.ndarray, np.ndarray],
    owners: np.ndarray,
    shape: Shape,
    rng: np.random.Generator,
    out: np.ndarray,
) -> None:
    """Fill ``out`` with one point per entry of ``owners`` (product index), chunk by chunk.

    point = length·direction + offset, where the offset mixes the product's own
    offset (``product_share`` of the variance) with a fresh one for this photo,
    rescaled to a real offset's length; then L2-normalised.
    """
    directions, lengths, product_offsets = products
    common, own = shape.product_share**0.5, (1 - shape.product_share) ** 0.5
    for start in range(0, len(owners), CHUNK):
        stop = min(start + CHUNK, len(owners))
        product = owners[start:stop]
        photo = real_offsets(real, stop - start, shape, rng)
        length = np.linalg.norm(photo, axis=1, keepdims=True)
        offset = common * product_offsets[product] + own * photo
        offset *= length / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-12)
        chunk = directions[product] * lengths[product, None] + offset
        faiss.normalize_L2(chunk)
        out[start:stop] = chunk


def generate(
    real: RealShape,
    n: int,
    n_queries: int,
    seed: int,
    shape: Shape = Shape(),
    out: np.ndarray | None = None,
):
    """Base vectors [n, d] (into ``out`` if given) and held-out queries of the same products."""
    rng = np.random.default_rng(seed)
    per_product = rng.integers(2, 7, size=n // 2 + 1)  # 2-6 points each, mean 4
    n_products = int(np.searchsorted(np.cumsum(per_product), n)) + 1
    owners = np.repeat(np.arange(n_products), per_product[:n_products])[:n]
    products = make_products(real, n_products, shape, rng)
    base = np.empty((n, real.dim), np.float32) if out is None else out
    make_points(real, products, owners, shape, rng, base)
    queries = np.empty((n_queries, real.dim), np.float32)
    query_owners = owners[rng.choice(n, n_queries, replace=False)]
    make_points(real, products, query_owners, shape, rng, queries)
    log.info("generated %d points of %d products, %d queries", n, n_products, n_queries)
    return base, queries


def write_standin(path: Path, *, classes: int, per_class: int, dim: int, seed: int) -> None:
    """A small labelled stand-in for real embeddings, only to smoke-test this script.

    Non-negative pooled-feature-like vectors: a shared mean direction (real pooled
    CNN features are all positive and correlated), class directions, and
    anisotropic within-class variation from a low-rank factor plus noise.
    """
    rng = np.random.default_rng(seed)
    common = np.abs(rng.standard_normal(dim)).astype(np.float32)
    class_dirs = np.abs(rng.standard_normal((classes, dim))).astype(np.float32) ** 2
    factor = rng.standard_normal((32, dim)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per_class)
    latent = rng.standard_normal((len(labels), 32)).astype(np.float32)
    vectors = (
        0.6 * common / np.linalg.norm(common)
        + class_dirs[labels] / np.linalg.norm(class_dirs, axis=1, keepdims=True)[labels]
        + 0.35 * (latent @ factor) / np.sqrt(32 * dim)
        + 0.25 * np.abs(rng.standard_normal((len(labels), dim))).astype(np.float32) / np.sqrt(dim)
    ).astype(np.float32)
    faiss.normalize_L2(vectors)
    np.savez(path, vectors=vectors, labels=labels)
    log.info("wrote stand-in embeddings %s: %d x %d, %d classes", path, *vectors.shape, classes)


def neighbourhood(base: np.ndarray, queries: np.ndarray, seed: int) -> dict[str, object]:
    """Statistics that decide how hard a set is for IVF, to compare real and generated."""
    sims = queries @ base.T
    top = -np.sort(-sims, axis=1)
    _, truth = faiss.knn(queries, base, K, metric=faiss.METRIC_INNER_PRODUCT)
    curves = {}
    for nlist in (16, 64):
        index = faiss.index_factory(base.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(base)
        index.add(base)
        curve = []
        for nprobe in (1, 2, 4, 8):
            index.nprobe = nprobe
            curve.append(round(recall_at_k(index.search(queries, K)[1], truth), 3))
        curves[f"IVF{nlist} recall@10 at nprobe 1,2,4,8"] = curve
    return {
        "sim to nn1/nn10/nn100": [round(float(top[:, i].mean()), 3) for i in (0, 9, 99)],
        "mean sim to any": round(float(sims.mean()), 3),
        **curves,
    }


def check_shape(real: RealShape, shape: Shape, seed: int) -> None:
    """Print real vs generated neighbourhood statistics at the real set's size."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real.vectors))
    n_queries = min(500, len(order) // 10)
    real_stats = neighbourhood(
        real.vectors[order[n_queries:]], real.vectors[order[:n_queries]], seed
    )
    base, queries = generate(real, len(order) - n_queries, n_queries, seed + 1, shape)
    generated = neighbourhood(base, queries, seed)
    print(f"\nshape check at n={len(base)} ({shape}):")
    for key in real_stats:
        print(f"  {key:36} real {real_stats[key]!s:30} generated {generated[key]}")


# -- measurement ------------------------------------------------------------------


@dataclass
class Row:
    name: str
    factory: str = ""
    version: str = ""
    build_s: float = 0.0
    bytes_per_vector: float = 0.0
    default_nprobe: int = 0
    recall_default: float = 0.0
    sweep: dict[int, float] = field(default_factory=dict)
    nprobe: int | None = None
    recall: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    flat_p50_ms: float = 0.0  # exact Flat, timed in the same rounds as this row
    reached: bool = False
    same_as: str | None = None
    dim: int = 0  # the dimension the index holds its vectors at
    recall_full: float = 0.0  # at `nprobe`, against exact search over the full vectors
    truth: np.ndarray | None = field(default=None, repr=False)  # exact top-k at `dim`
    project: object = field(default=None, repr=False)  # full vectors -> the index's own

    @property
    def speedup(self) -> float:
        return self.flat_p50_ms / self.p50_ms if self.p50_ms else float("nan")


def row_json(row: Row) -> dict[str, object]:
    return {f.name: getattr(row, f.name) for f in dataclasses.fields(row)
            if f.name not in ("truth", "project")}  # fmt: skip


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |approximate top-k ∩ exact top-k| / k."""
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum()
    return float(hits) / truth.size


def latencies(searcher: ShardedSearcher, queries: np.ndarray, nprobe: int | None) -> np.ndarray:
    """Single-query wall times in milliseconds, one query at a time."""
    times = np.empty(len(queries))
    for i, query in enumerate(queries):
        started = time.perf_counter()
        searcher.search(query[None], K, nprobe=nprobe)
        times[i] = time.perf_counter() - started
    return times * 1e3


def build(name: str, factory: str | None, base, ids, settings: Settings, args) -> Row:
    """Build one index as the engine does (settings' defaults); record time and size."""
    log.info("building %s (%s)", name, factory or f"settings: {settings.index_factory}")
    started = time.perf_counter()
    version = IndexStore.from_settings(settings).build(
        ids, base, model_version="bench", n_shards=args.shards, factory=factory
    )
    row = Row(name, version=version, build_s=time.perf_counter() - started)
    manifest = IndexStore.from_settings(settings).manifest(version)
    row.factory = manifest.factory
    row.bytes_per_vector = sum(s.bytes for s in manifest.shards) / max(1, manifest.total)
    row.default_nprobe = manifest.default_nprobe
    row.project = projection_of(IndexStore.from_settings(settings), version)
    row.dim = manifest.dim if row.project is None else row.project.d_out
    gc.collect()
    return row


class Projection:
    """The vector transforms in front of an index (PCA, L2norm), applied in chunks."""

    def __init__(self, chain: list[faiss.VectorTransform], owner: object):
        self.chain = chain
        self.owner = owner  # the loaded index the transforms live in: keeps them alive
        self.d_out = chain[-1].d_out

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        out = np.empty((len(vectors), self.d_out), np.float32)
        for start in range(0, len(vectors), CHUNK):
            chunk = np.ascontiguousarray(vectors[start : start + CHUNK], dtype=np.float32)
            for transform in self.chain:
                chunk = transform.apply(chunk)
            out[start : start + len(chunk)] = chunk
        return out


def projection_of(store: IndexStore, version: str) -> Projection | None:
    """Shard 0's transforms (every shard fits its own on a sample of the same vectors)."""
    loaded = store.load(version)
    shard = faiss.downcast_index(loaded.shards[0])
    if isinstance(shard, faiss.IndexIDMap | faiss.IndexIDMap2):
        shard = faiss.downcast_index(shard.index)
    if not isinstance(shard, faiss.IndexPreTransform):
        return None
    chain = [faiss.downcast_VectorTransform(shard.chain.at(i)) for i in range(shard.chain.size())]
    return Projection(chain, owner=(loaded, shard))


def own_truth(row: Row, base, queries, ids, full_truth: np.ndarray) -> np.ndarray:
    """Exact top-k at the index's own dimension (brute force over the projected base)."""
    if row.project is None:
        return full_truth
    started = time.perf_counter()
    _, found = faiss.knn(row.project(queries), row.project(base), K,
                         metric=faiss.METRIC_INNER_PRODUCT)  # fmt: skip
    log.info("%s: exact top-%d at %d-d in %.1fs", row.name, K, row.dim,
             time.perf_counter() - started)  # fmt: skip
    return ids[found]


def sweep_nprobe(row: Row, searcher: ShardedSearcher, queries, truth, args) -> None:
    """Recall at the default nprobe, then the smallest power of two reaching the target."""
    row.recall_default = recall_at_k(searcher.search(queries, K)[1], truth)
    nlist = searcher.index.nlist
    if not nlist:
        row.recall, row.reached = row.recall_default, row.recall_default >= args.target_recall
        return

    def recall(nprobe: int) -> float:
        row.sweep[nprobe] = recall_at_k(searcher.search(queries, K, nprobe)[1], truth)
        log.info("%s nprobe=%d recall@10=%.4f", row.name, nprobe, row.sweep[nprobe])
        return row.sweep[nprobe]

    nprobe = 1
    while nprobe <= min(args.max_nprobe, nlist):
        if recall(nprobe) >= args.target_recall:
            break
        nprobe *= 2
    if args.refine and nprobe > 2 and nprobe in row.sweep:
        # Bisect between the last power of two that missed and the first that hit,
        # to within 1/16: the doubling alone can overstate the work by up to 2x.
        low, high = nprobe // 2, nprobe
        while high - low > max(1, high // 16):
            middle = (low + high) // 2
            low, high = (low, middle) if recall(middle) >= args.target_recall else (middle, high)
    row.nprobe = max(row.sweep, key=lambda p: (row.sweep[p] >= args.target_recall, -p))
    if row.sweep[row.nprobe] < args.target_recall:
        row.nprobe = max(row.sweep, key=lambda p: (row.sweep[p], -p))
    row.recall = row.sweep[row.nprobe]
    row.reached = row.recall >= args.target_recall


def time_against_flat(row: Row, searcher, flat: ShardedSearcher, queries, args) -> np.ndarray:
    """Single-query latency of ``row`` and of exact Flat, alternating in rounds.

    Other jobs on shared cores come and go; alternating short rounds exposes both
    indexes to the same conditions, so their ratio is fair. Returns Flat's times.
    """
    rounds = max(1, args.rounds)
    ann_chunks = np.array_split(queries[: args.latency_queries], rounds)
    flat_chunks = np.array_split(queries[-args.flat_latency_queries :], rounds)
    for query in queries[:5]:  # warm-up
        searcher.search(query[None], K, nprobe=row.nprobe)
        flat.search(query[None], K)
    ann_times, flat_times = [], []
    for ann_chunk, flat_chunk in zip(ann_chunks, flat_chunks, strict=True):
        ann_times.append(latencies(searcher, ann_chunk, row.nprobe))
        flat_times.append(latencies(flat, flat_chunk, None))
    ann, exact = np.concatenate(ann_times), np.concatenate(flat_times)
    row.p50_ms, row.p99_ms = (float(v) for v in np.percentile(ann, [50, 99]))
    row.flat_p50_ms = float(np.percentile(exact, 50))
    log.info("%s: %s", row.name, row)
    return exact


# Filtered queries: a label held by 1 item in 100,000, and one held by 1% of the items.
FILTERS = (("1 in 100,000", 100_000), ("1%", 100))


@dataclass
class FilterRow:
    name: str
    members: int
    recall: float = 0.0  # against brute force over the members: 1.0 is exact
    p50_ms: float = 0.0
    p99_ms: float = 0.0


def filter_sets(n: int, queries: np.ndarray, base, ids: np.ndarray, seed: int, project=None
                ) -> list[tuple[FilterRow, np.ndarray, np.ndarray]]:
    """Each filter's member ids (random items) and its exact top-k among the members,
    at the index's own dimension (``project``: its transforms, if any)."""
    rng = np.random.default_rng(seed + 77)
    project = project or (lambda vectors: np.ascontiguousarray(vectors, dtype=np.float32))
    queries = project(queries)
    sets = []
    for name, one_in in FILTERS:
        rows = np.sort(rng.choice(n, max(1, n // one_in), replace=False))
        k = min(K, len(rows))
        _, found = faiss.knn(queries, project(base[rows]), k,
                             metric=faiss.METRIC_INNER_PRODUCT)
        sets.append((FilterRow(name, len(rows)), ids[rows], ids[rows][found]))
    return sets


def measure_filters(searcher: ShardedSearcher, queries, sets, args) -> list[FilterRow]:
    """Each filter through ``search(..., within=members)`` as the engine runs it: its
    recall against the exact answer, and its single-query latency (selector included)."""
    measured = []
    for row, within, truth in sets:
        found = searcher.search(queries, K, within=within)[1][:, : truth.shape[1]]
        row.recall = recall_at_k(found, truth)
        times = np.empty(min(len(queries), args.latency_queries))
        for i, query in enumerate(queries[: len(times)]):
            started = time.perf_counter()
            searcher.search(query[None], K, within=within)
            times[i] = time.perf_counter() - started
        row.p50_ms, row.p99_ms = (float(v) for v in np.percentile(times * 1e3, [50, 99]))
        log.info("filter %s: %s", row.name, row)
        measured.append(row)
    return measured


def print_filters(rows: list[FilterRow], factory: str) -> None:
    print(f"\nfiltered queries on the default index ({factory}), k={K}: "
          "the search restricted to the members (IDSelector), recall against brute force "
          "over the members")
    print(f"{'filter':14} {'members':>9} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row.name:14} {row.members:9,} {row.recall:9.4f} {row.p50_ms:8.3f} "
              f"{row.p99_ms:8.3f}{'  exact' if row.recall == 1.0 else ''}")


def print_table(rows: list[Row], flat: Row, args: argparse.Namespace) -> None:
    header = (
        f"{'index':18} {'factory':30} {'dim':>5} {'build s':>8} {'B/vec':>8} {'nprobe':>6} "
        f"{'recall@10':>9} {'full-d':>9} {'p50 ms':>8} {'p99 ms':>8} {'Flat p50':>9} "
        f"{'speed-up':>8} "
        f"{'dflt nprobe':>11} {'recall@dflt':>11}"
    )
    print()
    print(
        f"n={args.n:,}  dim={args.dim}  shards={args.shards}  queries={args.queries}  "
        f"target recall@10 >= {args.target_recall}  faiss {faiss.__version__}  "
        f"omp threads {faiss.omp_get_max_threads()}  low-latency {args.low_latency}"
    )
    print(header)
    print("-" * len(header))
    for row in [flat, *rows]:
        nprobe = "-" if row.nprobe is None else str(row.nprobe)
        mark = "" if row.reached else "*"
        name = row.name + (f" (= {row.same_as})" if row.same_as else "")
        print(
            f"{name:18} {row.factory:30} {row.dim:5} {row.build_s:8.1f} "
            f"{row.bytes_per_vector:8.1f} {nprobe:>6} {row.recall:8.4f}{mark:1} "
            f"{row.recall_full:9.4f} {row.p50_ms:8.3f} {row.p99_ms:8.3f} "
            f"{row.flat_p50_ms:9.3f} {row.speedup:7.1f}x "
            f"{row.default_nprobe or '-':>11} {row.recall_default:11.4f}"
        )
    print(
        "recall@10: against exact search at the index's own dimension (dim); full-d: "
        "against exact search over the full vectors;\nspeed-up: exact Flat (full vectors) "
        "p50 / index p50, both timed one query at a time in alternating rounds;\n"
        "* target recall not reached within the nprobe sweep (best shown)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", type=Path, help="npz with vectors [n, d] and labels [n]")
    parser.add_argument("--n", type=int, default=1_000_000, help="base vectors (default 1M)")
    parser.add_argument("--queries", type=int, default=1_000, help="held-out queries")
    parser.add_argument(
        "--latency-queries",
        type=int,
        default=500,
        help="single queries timed per ANN index (default 500)",
    )
    parser.add_argument(
        "--flat-latency-queries",
        type=int,
        default=60,
        help="single Flat queries timed beside each index (slow at 1M; default 60)",
    )
    parser.add_argument(
        "--low-latency",
        action="store_true",
        help="searcher splits each query's IVF lists over threads (fast on idle cores)",
    )
    parser.add_argument(
        "--no-memmap",
        dest="memmap",
        action="store_false",
        help="keep the base vectors in anonymous memory instead of a file in the workdir",
    )
    parser.add_argument(
        "--no-refine",
        dest="refine",
        action="store_false",
        help="report the smallest power-of-two nprobe only (no bisection after the sweep)",
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="alternating rounds of index and Flat timing"
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=defaults.shards,
        help="shards (default: settings, %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.search_threads,
        help="searcher threads (0: one per shard)",
    )
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--target-p50-ms", type=float, default=1.0)
    parser.add_argument("--target-p99-ms", type=float, default=5.0)
    parser.add_argument("--target-bytes", type=float, default=600.0, help="per vector")
    parser.add_argument("--max-nprobe", type=int, default=256)
    parser.add_argument(
        "--only",
        default="auto,ivf_flat,ivf_pq",
        help="comma list from auto, ivf_flat, ivf_pq (exact Flat is always run)",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=FACTORY",
        help="also measure a faiss factory string, e.g. sq8=IVF4096,SQ8",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--alpha",
        type=float,
        default=Shape.alpha,
        help="Dirichlet concentration of centre mixtures (%(default)s)",
    )
    parser.add_argument(
        "--product-share",
        type=float,
        default=Shape.product_share,
        help="share of offset variance common to a product (%(default)s)",
    )
    parser.add_argument(
        "--no-shape-check",
        action="store_true",
        help="skip the real-vs-generated neighbourhood comparison",
    )
    parser.add_argument("--workdir", type=Path, help="where indexes are written (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep index files")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--write-standin",
        type=Path,
        metavar="FILE",
        help="write small stand-in labelled embeddings to FILE and exit",
    )
    parser.add_argument("--standin-classes", type=int, default=81)
    parser.add_argument("--standin-per-class", type=int, default=67)
    parser.add_argument("--dim", type=int, default=1280, help="stand-in dimension only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.write_standin:
        write_standin(
            args.write_standin,
            classes=args.standin_classes,
            per_class=args.standin_per_class,
            dim=args.dim,
            seed=args.seed,
        )
        return 0
    if not args.embeddings:
        print("--embeddings FILE is required (or --write-standin FILE)", file=sys.stderr)
        return 2
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - {"auto", "ivf_flat", "ivf_pq"}
    if unknown:
        print(
            f"unknown index {sorted(unknown)}; choose from auto, ivf_flat, ivf_pq", file=sys.stderr
        )
        return 2
    started = time.perf_counter()

    real = RealShape.from_file(args.embeddings)
    args.dim = real.dim
    shape = Shape(alpha=args.alpha, product_share=args.product_share)
    if not args.no_shape_check:
        check_shape(real, shape, args.seed)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_index-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base_path = workdir / "base.npy"
    out = None
    if args.memmap:  # file-backed pages: the kernel may drop them under memory pressure
        out = np.lib.format.open_memmap(
            base_path, mode="w+", dtype=np.float32, shape=(args.n, real.dim)
        )
    base, queries = generate(real, args.n, args.queries, args.seed, shape, out)
    if args.memmap:
        base.flush()
        del base, out
        base = np.load(base_path, mmap_mode="r")
    ids = np.arange(args.n, dtype=np.int64) * 7919  # any distinct non-negative ids
    del real
    t0 = time.perf_counter()
    _, rows = faiss.knn(queries, base, K, metric=faiss.METRIC_INNER_PRODUCT)
    truth = ids[rows]
    log.info("exact ground truth for %d queries in %.1fs", len(queries), time.perf_counter() - t0)

    # 1. Build everything while the base vectors are at hand (one index at a time).
    settings = Settings(home=workdir, shards=args.shards)
    shard_n, dim = args.n // args.shards, base.shape[1]
    factories = {
        "ivf_flat": ivf_flat_spec(shard_n, dim).factory,
        "ivf_pq": ivf_pq_spec(shard_n, dim).factory,
    }
    flat = build("flat", flat_spec().factory, base, ids, settings, args)
    flat.truth = truth
    rows: list[Row] = []
    auto = build("auto", None, base, ids, settings, args) if "auto" in wanted else None
    if auto is not None:
        rows.append(auto)
    for name in ("ivf_flat", "ivf_pq"):
        if name in wanted and not (auto is not None and auto.factory == factories[name]):
            rows.append(build(name, factories[name], base, ids, settings, args))
    for extra in args.extra:
        name, _, factory = extra.partition("=")
        rows.append(build(name, factory, base, ids, settings, args))
    for row in rows:
        row.truth = own_truth(row, base, queries, ids, truth)
    sets = (filter_sets(args.n, queries, base, ids, args.seed, auto.project)
            if auto is not None else [])  # fmt: skip
    del base
    gc.collect()
    base_path.unlink(missing_ok=True)

    # 2. Search: exact Flat stays loaded and is timed beside each index in turn.
    store = IndexStore.from_settings(settings)
    flat_times = []
    with ShardedSearcher(store.load(flat.version), threads=args.threads) as flat_searcher:
        sweep_nprobe(flat, flat_searcher, queries, truth, args)
        flat.recall_full = flat.recall
        for row in rows:
            loaded = store.load(row.version)
            with ShardedSearcher(
                loaded, threads=args.threads, low_latency=args.low_latency
            ) as searcher:
                sweep_nprobe(row, searcher, queries, row.truth, args)
                row.recall_full = recall_at_k(searcher.search(queries, K, row.nprobe)[1], truth)
                flat_times.append(time_against_flat(row, searcher, flat_searcher, queries, args))
                if row is auto:
                    filtered = measure_filters(searcher, queries, sets, args)
            gc.collect()
    if flat_times:
        every = np.concatenate(flat_times)
        flat.p50_ms, flat.p99_ms = (float(v) for v in np.percentile(every, [50, 99]))
        flat.flat_p50_ms = flat.p50_ms
    for name in ("ivf_flat", "ivf_pq"):
        if name in wanted and auto is not None and auto.factory == factories[name]:
            rows.append(dataclasses.replace(auto, name=name, same_as="auto"))

    print_table(rows, flat, args)
    if auto is not None:
        print_filters(filtered, auto.factory)
        ok = (auto.reached and auto.p50_ms <= args.target_p50_ms
              and auto.p99_ms <= args.target_p99_ms
              and auto.bytes_per_vector <= args.target_bytes)  # fmt: skip
        print(
            f"\ndefault index ('auto' = {auto.factory}, {auto.dim}-d): recall@10 "
            f"{auto.recall:.4f} at nprobe {auto.nprobe} (full-d {auto.recall_full:.4f}), "
            f"single-query p50 {auto.p50_ms:.3f} ms / p99 {auto.p99_ms:.3f} ms, "
            f"{auto.bytes_per_vector:.0f} B/vector; exact Flat {auto.flat_p50_ms:.3f} ms "
            f"({auto.speedup:.1f}x)  [target: recall >= {args.target_recall}, p50 <= "
            f"{args.target_p50_ms} ms, p99 <= {args.target_p99_ms} ms, <= "
            f"{args.target_bytes} B/vector: {'MET' if ok else 'NOT MET'}]"
        )
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak_gib:.1f} GiB, total {time.perf_counter() - started:.0f}s")
    if args.json:
        payload = {
            "args": {key: str(value) for key, value in vars(args).items()},
            "rows": [row_json(row) for row in [flat, *rows]],
            "filters": [asdict(row) for row in filtered] if auto is not None else [],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    if not args.keep:
        for row in [flat, *rows]:
            if not row.same_as:
                shutil.rmtree(store.root / row.version, ignore_errors=True)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

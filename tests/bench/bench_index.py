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

Ten million vectors (51 GB at 1,280-d; needs that much free disk in ``--workdir``
and ~24 GB of memory)::

    .venv/bin/python tests/bench/bench_index.py --embeddings grocery.npz --n 10000000 \
        --only auto --no-shape-check --workdir /big/disk/bench

The generator keeps only each product's mixture (not its 1,280-d centre and offset)
and writes the base a chunk at a time; the engine's build reads it a chunk at a time;
ground truth is brute force over chunks of the base, projected chunk by chunk where
the index projects (no n x 256 copy). Above ``--flat-max-gb`` of base vectors (default
6: 1M x 1280 is 5.1) there is no exact full-d Flat index (it would be a second copy
of the base in memory): no Flat baseline, no speed-up and no full-d recall columns, and
the output says so. Latency is reported at the target nprobe and at the default one.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
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


class Products:
    """Synthetic products: centres from convex mixtures of 2-3 real centres, and one
    real-offset-shaped vector per product, shared by all its points.

    Only the mixtures are kept (classes and weights: ~40 bytes a product); each block of
    :data:`CHUNK` products' unit directions and offsets is computed when points ask for
    it, the offsets from the random state saved where they were first drawn. Ten million
    points have 2.5 million products: 26 GB of directions and offsets if stored. The
    random stream is the one the stored version drew, so a seed gives the same data.
    """

    def __init__(self, real: RealShape, n_products: int, shape: Shape, rng: np.random.Generator):
        self.real, self.shape, self.n = real, shape, n_products
        n_classes = len(real.centres)
        lengths = np.linalg.norm(real.centres, axis=1)
        mix = rng.integers(2, 4, n_products)  # 2 or 3 classes each
        self.picks = np.empty((n_products, 3), np.int64)  # 3 distinct classes per product
        for start in range(0, n_products, CHUNK):
            stop = min(start + CHUNK, n_products)
            keys = rng.random((stop - start, n_classes))
            self.picks[start:stop] = np.argpartition(keys, 3, axis=1)[:, :3]
        weights = rng.dirichlet(np.full(3, shape.alpha), n_products).astype(np.float32)
        weights[mix == 2, 2] = 0
        weights /= weights.sum(axis=1, keepdims=True)
        self.weights = weights
        self.states = []  # the random state each block's offsets are drawn from
        for start in range(0, n_products, CHUNK):
            self.states.append(copy.deepcopy(rng.bit_generator.state))
            offset_draws(real, min(start + CHUNK, n_products) - start, shape, rng)
        self.lengths = (weights * lengths[self.picks]).sum(axis=1).astype(np.float32)
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def block(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """Unit directions and offsets of products ``number·CHUNK`` to the next block."""
        if self._cached is not None and self._cached[0] == number:
            return self._cached[1], self._cached[2]
        start, stop = number * CHUNK, min((number + 1) * CHUNK, self.n)
        directions = np.zeros((stop - start, self.real.dim), np.float32)
        for j in range(3):
            directions += self.weights[start:stop, j, None] * self.real.centres[
                self.picks[start:stop, j]
            ]
        faiss.normalize_L2(directions)
        rng = np.random.default_rng()
        rng.bit_generator.state = self.states[number]
        offsets = real_offsets(self.real, stop - start, self.shape, rng)
        self._cached = (number, directions, offsets)
        return directions, offsets

    def rows(self, products: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Directions, lengths and offsets of ``products`` (indices, any order)."""
        directions = np.empty((len(products), self.real.dim), np.float32)
        offsets = np.empty_like(directions)
        blocks = products // CHUNK
        for number in np.unique(blocks):
            where = np.flatnonzero(blocks == number)
            block_directions, block_offsets = self.block(int(number))
            local = products[where] - number * CHUNK
            directions[where], offsets[where] = block_directions[local], block_offsets[local]
        return directions, self.lengths[products], offsets


def offset_draws(real: RealShape, size: int, shape: Shape, rng: np.random.Generator):
    """The random numbers :func:`real_offsets` uses, in the order it draws them."""
    n_photos = len(real.offsets)
    first = rng.integers(0, n_photos, size)
    second = rng.integers(0, n_photos, size)
    blend = rng.uniform(-shape.blend, shape.blend, (size, 1)).astype(np.float32)
    jitter = rng.uniform(1 - shape.jitter, 1 + shape.jitter, (size, 1)).astype(np.float32)
    return first, second, blend, jitter


def real_offsets(real: RealShape, size: int, shape: Shape, rng: np.random.Generator):
    """Real photo offsets, each blended with a fraction of another and rescaled.

    A million points reuse a few thousand real offsets; the blend and the length
    jitter keep any two of them from being exact copies.
    """
    first_rows, second_rows, blend, jitter = offset_draws(real, size, shape, rng)
    first, second = real.offsets[first_rows], real.offsets[second_rows]
    offset = first + blend * second
    target = np.linalg.norm(first, axis=1, keepdims=True)
    target *= jitter
    return offset * (target / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-12))


def make_points(
    real: RealShape,
    products: Products,
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
    common, own = shape.product_share**0.5, (1 - shape.product_share) ** 0.5
    for start in range(0, len(owners), CHUNK):
        stop = min(start + CHUNK, len(owners))
        directions, lengths, product_offsets = products.rows(owners[start:stop])
        photo = real_offsets(real, stop - start, shape, rng)
        length = np.linalg.norm(photo, axis=1, keepdims=True)
        offset = common * product_offsets + own * photo
        offset *= length / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-12)
        chunk = directions * lengths[:, None] + offset
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
    """Base vectors [n, d] (into ``out`` if given) and held-out queries of the same products.

    Memory beyond ``out``: the products' mixtures and a few chunks (``Products``).
    """
    rng = np.random.default_rng(seed)
    per_product = rng.integers(2, 7, size=n // 2 + 1)  # 2-6 points each, mean 4
    n_products = int(np.searchsorted(np.cumsum(per_product), n)) + 1
    owners = np.repeat(np.arange(n_products), per_product[:n_products])[:n]
    products = Products(real, n_products, shape, rng)
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
    p50_default_ms: float = 0.0  # at default_nprobe, timed in the same rounds
    p99_default_ms: float = 0.0
    flat_p50_ms: float = 0.0  # exact Flat, timed in the same rounds as this row
    reached: bool = False
    same_as: str | None = None
    dim: int = 0  # the dimension the index holds its vectors at
    recall_full: float | None = None  # at `nprobe`, vs exact search over the full vectors
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


TRUTH_ROWS = 1 << 18  # base rows per brute-force step: 1.3 GB at 1,280-d


def exact_topk(queries: np.ndarray, base, ids: np.ndarray, project=None) -> np.ndarray:
    """Ids of the exact top-k by inner product, streaming ``base`` (a memory map, maybe
    larger than memory) in chunks, each ``project``-ed (an index's transforms) if given:
    10M projected vectors at 256-d would be 10 GB at once."""
    if project is not None:
        queries = project(queries)
    heap = faiss.ResultHeap(len(queries), K, keep_max=True)
    for start in range(0, len(base), TRUTH_ROWS):
        chunk = np.ascontiguousarray(base[start : start + TRUTH_ROWS], dtype=np.float32)
        if project is not None:
            chunk = project(chunk)
        scores, rows = faiss.knn(queries, chunk, min(K, len(chunk)),
                                 metric=faiss.METRIC_INNER_PRODUCT)  # fmt: skip
        heap.add_result(scores, np.where(rows < 0, -1, rows + start))
    heap.finalize()
    return ids[heap.I]


def own_truth(row: Row, base, queries, ids, full_truth) -> np.ndarray:
    """Exact top-k at the index's own dimension (brute force over the projected base).

    ``full_truth``: the answer at the full dimension, or a function computing it."""
    if row.project is None:
        return full_truth() if callable(full_truth) else full_truth
    started = time.perf_counter()
    truth = exact_topk(queries, base, ids, row.project)
    log.info("%s: exact top-%d at %d-d in %.1fs", row.name, K, row.dim,
             time.perf_counter() - started)  # fmt: skip
    return truth


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


def time_against_flat(row: Row, searcher, flat: ShardedSearcher | None, queries, args
                      ) -> np.ndarray:  # fmt: skip
    """Single-query latency of ``row`` at its target nprobe and at its default one, and
    of exact Flat (when built), alternating in rounds.

    Other jobs on shared cores come and go; alternating short rounds exposes every
    variant to the same conditions, so their ratios are fair. Returns Flat's times.
    """
    rounds = max(1, args.rounds)
    ann_chunks = np.array_split(queries[: args.latency_queries], rounds)
    flat_chunks = np.array_split(queries[-args.flat_latency_queries :], rounds)
    default = row.default_nprobe or None
    for query in queries[:5]:  # warm-up
        searcher.search(query[None], K, nprobe=row.nprobe)
        if flat is not None:
            flat.search(query[None], K)
    ann_times, default_times, flat_times = [], [], []
    for ann_chunk, flat_chunk in zip(ann_chunks, flat_chunks, strict=True):
        ann_times.append(latencies(searcher, ann_chunk, row.nprobe))
        default_times.append(latencies(searcher, ann_chunk, default))
        if flat is not None:
            flat_times.append(latencies(flat, flat_chunk, None))
    ann = np.concatenate(ann_times)
    row.p50_ms, row.p99_ms = (float(v) for v in np.percentile(ann, [50, 99]))
    at_default = np.concatenate(default_times)
    row.p50_default_ms, row.p99_default_ms = (
        float(v) for v in np.percentile(at_default, [50, 99])
    )
    exact = np.concatenate(flat_times) if flat_times else np.empty(0)
    row.flat_p50_ms = float(np.percentile(exact, 50)) if len(exact) else 0.0
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
        f"{'index':18} {'factory':38} {'dim':>5} {'build s':>8} {'B/vec':>8} {'nprobe':>6} "
        f"{'recall@10':>9} {'full-d':>9} {'p50 ms':>8} {'p99 ms':>8} {'Flat p50':>9} "
        f"{'speed-up':>8} "
        f"{'dflt nprobe':>11} {'recall@dflt':>11} {'p50@dflt':>9} {'p99@dflt':>9}"
    )
    print()
    print(
        f"n={args.n:,}  dim={args.dim}  shards={args.shards}  queries={args.queries}  "
        f"target recall@10 >= {args.target_recall}  faiss {faiss.__version__}  "
        f"omp threads {faiss.omp_get_max_threads()}  low-latency {args.low_latency}"
    )
    print(header)
    print("-" * len(header))
    for row in [flat, *rows] if flat is not None else rows:
        nprobe = "-" if row.nprobe is None else str(row.nprobe)
        mark = "" if row.reached else "*"
        name = row.name + (f" (= {row.same_as})" if row.same_as else "")
        full = "-" if row.recall_full is None else f"{row.recall_full:.4f}"
        flat_p50 = f"{row.flat_p50_ms:9.3f} {row.speedup:7.1f}x" if row.flat_p50_ms else (
            f"{'-':>9} {'-':>8}")  # fmt: skip
        default = (f"{row.p50_default_ms:9.3f} {row.p99_default_ms:9.3f}" if row.default_nprobe
                   else f"{'-':>9} {'-':>9}")  # fmt: skip
        print(
            f"{name:18} {row.factory:38} {row.dim:5} {row.build_s:8.1f} "
            f"{row.bytes_per_vector:8.1f} {nprobe:>6} {row.recall:8.4f}{mark:1} "
            f"{full:>9} {row.p50_ms:8.3f} {row.p99_ms:8.3f} {flat_p50} "
            f"{row.default_nprobe or '-':>11} {row.recall_default:11.4f} {default}"
        )
    if flat is None:
        print(
            f"no exact Flat baseline: {args.n:,} x {args.dim} float32 vectors are "
            f"{args.n * args.dim * 4 / 1e9:.1f} GB, above --flat-max-gb {args.flat_max_gb}; "
            "no full-d recall nor speed-up columns"
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
        "--flat-max-gb",
        type=float,
        default=6.0,
        help="build the exact full-d Flat baseline (and the full-d recall) only up to this "
        "many GB of base vectors (default %(default)s: 1M x 1280 is 5.1)",
    )
    parser.add_argument(
        "--only",
        default="auto,ivf_flat,ivf_pq",
        help="comma list from auto, ivf_flat, ivf_pq (exact Flat runs up to --flat-max-gb)",
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
    # Exact Flat over the full vectors (the baseline, and the full-d recall column)
    # only while it fits beside everything else: 10M x 1280-d is 51 GB.
    with_flat = args.n * args.dim * 4 <= args.flat_max_gb * 1e9
    full_truth: list[np.ndarray] = []
    mapped = [base]  # emptied before the memory map is closed

    def truth_full_d() -> np.ndarray:
        if not full_truth:
            t0 = time.perf_counter()
            full_truth.append(exact_topk(queries, mapped[0], ids))
            log.info("exact ground truth for %d queries in %.1fs", len(queries),
                     time.perf_counter() - t0)  # fmt: skip
        return full_truth[0]

    # 1. Build everything while the base vectors are at hand (one index at a time).
    settings = Settings(home=workdir, shards=args.shards)
    shard_n, dim = args.n // args.shards, base.shape[1]
    factories = {
        "ivf_flat": ivf_flat_spec(shard_n, dim).factory,
        "ivf_pq": ivf_pq_spec(shard_n, dim).factory,
    }
    flat = build("flat", flat_spec().factory, base, ids, settings, args) if with_flat else None
    if flat is not None:
        flat.truth = truth_full_d()
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
        row.truth = own_truth(row, base, queries, ids, truth_full_d)
    truth = full_truth[0] if full_truth else None
    sets = (filter_sets(args.n, queries, base, ids, args.seed, auto.project)
            if auto is not None else [])  # fmt: skip
    mapped.clear()
    del base
    gc.collect()
    base_path.unlink(missing_ok=True)

    # 2. Search: exact Flat stays loaded and is timed beside each index in turn.
    store = IndexStore.from_settings(settings)
    flat_times = []
    with contextlib.ExitStack() as stack:
        flat_searcher = None
        if flat is not None:
            flat_searcher = stack.enter_context(
                ShardedSearcher(store.load(flat.version), threads=args.threads)
            )
            sweep_nprobe(flat, flat_searcher, queries, truth, args)
            flat.recall_full = flat.recall
        for row in rows:
            loaded = store.load(row.version)
            with ShardedSearcher(
                loaded, threads=args.threads, low_latency=args.low_latency
            ) as searcher:
                sweep_nprobe(row, searcher, queries, row.truth, args)
                if truth is not None:
                    found = searcher.search(queries, K, row.nprobe)[1]
                    row.recall_full = recall_at_k(found, truth)
                flat_times.append(time_against_flat(row, searcher, flat_searcher, queries, args))
                if row is auto:
                    filtered = measure_filters(searcher, queries, sets, args)
            del loaded
            gc.collect()
    if flat is not None and flat_times:
        every = np.concatenate(flat_times)
        flat.p50_ms, flat.p99_ms = (float(v) for v in np.percentile(every, [50, 99]))
        flat.flat_p50_ms = flat.p50_ms
    for name in ("ivf_flat", "ivf_pq"):
        if name in wanted and auto is not None and auto.factory == factories[name]:
            rows.append(dataclasses.replace(auto, name=name, same_as="auto"))

    print_table(rows, flat, args)
    full_d = "" if auto is None or auto.recall_full is None else (
        f" (full-d {auto.recall_full:.4f})")  # fmt: skip
    flat_text = "" if flat is None else (
        f"; exact Flat {auto.flat_p50_ms:.3f} ms ({auto.speedup:.1f}x)")  # fmt: skip
    if auto is not None:
        print_filters(filtered, auto.factory)
        ok = (auto.reached and auto.p50_ms <= args.target_p50_ms
              and auto.p99_ms <= args.target_p99_ms
              and auto.bytes_per_vector <= args.target_bytes)  # fmt: skip
        print(
            f"\ndefault index ('auto' = {auto.factory}, {auto.dim}-d), built in "
            f"{auto.build_s:.0f}s: recall@10 "
            f"{auto.recall:.4f} at nprobe {auto.nprobe}{full_d}, "
            f"single-query p50 {auto.p50_ms:.3f} ms / p99 {auto.p99_ms:.3f} ms, "
            f"{auto.bytes_per_vector:.0f} B/vector; at the default nprobe "
            f"{auto.default_nprobe}: recall@10 {auto.recall_default:.4f}, p50 "
            f"{auto.p50_default_ms:.3f} ms / p99 {auto.p99_default_ms:.3f} ms{flat_text}"
            f"  [target: recall >= {args.target_recall}, p50 <= "
            f"{args.target_p50_ms} ms, p99 <= {args.target_p99_ms} ms, <= "
            f"{args.target_bytes} B/vector: {'MET' if ok else 'NOT MET'}]"
        )
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak_gib:.1f} GiB, total {time.perf_counter() - started:.0f}s")
    if args.json:
        payload = {
            "args": {key: str(value) for key, value in vars(args).items()},
            "rows": [row_json(row) for row in ([flat] if flat else []) + rows],
            "filters": [asdict(row) for row in filtered] if auto is not None else [],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    if not args.keep:
        for row in ([flat] if flat else []) + rows:
            if not row.same_as:
                shutil.rmtree(store.root / row.version, ignore_errors=True)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Which faiss index a shard gets, and how to make it.

``'auto'`` follows the faiss wiki page "Guidelines to choose an index", by the
number of vectors ``n`` in a shard:

* ``n < flat_threshold``: exact search, ``IDMap2,PCA{index_dim},L2norm,Flat``. Brute
  force is fast enough for small shards; ``IDMap2`` gives it our int64 ids and
  ``remove_ids``.
* ``n < pq_threshold``: ``PCA{index_dim},L2norm,IVF{nlist},SQfp16``, half-float codes:
  520 bytes per vector at 256-d, recall limited only by ``nprobe``.

The vectors go into every index compact: projected onto their ``index_dim`` (256)
principal components, fitted on the shard's own vectors when the index is trained (like
the IVF centroids; the vector store keeps the full vectors, so every re-index fits
again), and renormalised, so scores are cosines in that space. Fitted on the photos a
shop searches, the projection finds products as well as the full features or better
(README: Grocery test classes MAP@R 38.7 against 37.4 at 1,280-d; produce → packages
24.5 against 22.1, both fitted on the 1,745–2,442 photos searched); whitening fitted on
other photos is not used: it helped one split and hurt the other. No projection when
the vectors are already at most ``index_dim`` wide, ``index_dim`` is 0, or the shard
has too few vectors to fit it (:data:`PCA_POINTS_PER_DIM`): then scores are the model's
own cosines.
* beyond: ``PCA…,L2norm,IVF{nlist},PQ{m}`` (``m`` sub-quantizers of 8 bits each,
  ``dim % m == 0``, ~64 bytes per vector), so a hundred million vectors fit one host.

Measured on a million vectors shaped like the Grocery photos' embeddings
(tests/bench/bench_index.py, README): 8-bit scalar codes lose ~0.02 of recall@10 at
the same ``nprobe`` (0.939 against 0.956 at 256-d, nprobe 128), and 4-bit fast-scan PQ
(``PQ128x4fs``) re-ranked from its 300 best candidates with exact vectors reaches only
0.85: neighbours of near-identical products are too close for 4-bit codes. faiss's
own re-ranking stage (``Refine``/``RFlat``) cannot take our ids nor remove vectors, so
the fast-scan family is not an ``auto`` choice; it can be chosen explicitly.

From ``hnsw_nlist`` lists up (default :data:`HNSW_QUANTIZER_NLIST`, 16,384: from ~8.4M
vectors a shard) the IVF is ``IVF{nlist}_HNSW32``: an HNSW graph over the centroids
assigns vectors to lists, in k-means and when they are added, instead of a comparison
with every centroid (``nlist`` x 256 multiply-adds per vector: 10M vectors into 16,384
lists are ~8·10^13). Measured on 1M vectors shaped like the Grocery embeddings, PCA256
+ PQ64 (tests/bench/bench_index.py's generator, 2 shared cores, so times are rough):

* k-means (10 iterations): 4,096 lists on 262k points 187 s flat, 136 s with the graph;
  16,384 lists on 639k points 1,037 s flat, 261 s with the graph. Centroids from either
  give the same recall (0.655 against 0.654 at nprobe 64, 4,096 lists).
  With the graph, 16,384 lists train on the 1M points 'auto' samples in 472 s.
* adding 1M vectors: into 4,096 lists 86 s flat, 31-36 s with the graph; into 16,384
  lists 139 s flat, 37 s with the graph at efSearch 16 (faiss's default), 106 s at 64.
* recall@10 at nprobe 64 / 256, 4,096 lists: 0.660 / 0.668 flat; graph adding at
  efSearch 16 and searching at efSearch = nprobe 0.641 / 0.647; adding at efSearch 64
  (:data:`HNSW_ADD_EF`) 0.654 / 0.662, and 0.656 / 0.666 with queries assigned at
  efSearch = 2·nprobe. 16,384 lists: 0.655 / 0.675 flat; 0.617 / 0.632 graph at
  efSearch 16 and nprobe; 0.656 / 0.680 adding at 64 with queries at 2·nprobe (~99.8%
  of their exact lists).

Queries are assigned by the graph too, at efSearch = 2·nprobe: faster than the flat
scan on busy cores (:mod:`indexer.index.coarse`, which also keeps filters exact).
Below 16,384 lists (up to 8.4M vectors a shard) the flat assignment stays: it costs
minutes, not hours, and loses no recall.

``nlist`` is ``4·sqrt(n)`` rounded to a power of two (the wiki's range is
4–16·sqrt(n)), lowered until every centroid has at least 39 training points
(faiss warns below that). k-means trains on at most ``64·nlist`` sampled vectors
(the wiki asks for 30–256 per centroid; 64 keeps a 1M-vector build in minutes on
a laptop CPU). IVF indexes take our ids directly (``add_with_ids``), so only the
flat family is wrapped in ``IDMap2``.

Explicit factory strings are accepted when faiss can build them and the result
supports ``add_with_ids`` and ``remove_ids`` (IVF anything, with or without a
``PCA``/``OPQ``/``L2norm`` transform in front, or a flat-codes index such as ``Flat``,
``PQ16``, ``SQ8``, which is wrapped in ``IDMap2``). Graph indexes (HNSW, NSG) and
``Refine`` stages cannot remove vectors and are refused; an HNSW graph as the IVF's
coarse quantizer (``IVF4096_HNSW32,PQ64``) is fine: it holds centroids, not vectors.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import faiss

from indexer.index.coarse import graph_quantizer, quantizer_parameters
from indexer.index.errors import FactoryError

AUTO = "auto"
METRIC = faiss.METRIC_INNER_PRODUCT
_FAISS_LOCATION = re.compile(r"^Error in .*? at \S+:\d+: (Error: )?")

MIN_POINTS_PER_CENTROID = 39  # faiss ClusteringParameters.min_points_per_centroid
TRAIN_POINTS_PER_CENTROID = 64
MAX_NLIST = 65_536
PQ_TARGET_BYTES = 64
PQ_TRAIN_POINTS = 256 * 256  # 256 centroids per sub-quantizer x 256 points each
INDEX_DIM = 256  # the dimension vectors go into an IVF index with (see the module doc)
# A projection to d dimensions is fitted on at least this many vectors per dimension
# (fewer and its smaller components are noise); below that the vectors stay as they are.
PCA_POINTS_PER_DIM = 8
# From this nlist up 'auto' assigns vectors to lists with an HNSW graph over the
# centroids (IVF{nlist}_HNSW32) instead of comparing with every centroid: see the
# module docstring for the measurements.
HNSW_QUANTIZER_NLIST = 16_384
HNSW_M = 32  # graph neighbours per centroid (the faiss wiki's IVF…_HNSW32)
# Candidates the graph search keeps when a vector is added (k = 1): faiss's default
# of 16 lost 0.04 recall@10 at 16,384 lists (module doc). k-means keeps 16: its
# centroids are as good as exact k-means' and 64 made it ~3x slower. A search passes
# its own (coarse.quantizer_parameters).
HNSW_ADD_EF = 64
HNSW_TRAIN_EF = 16

# Default nprobe: the number of inverted lists probed per query, the same rule for
# every IVF index (exact Flat has none). tests/bench/bench_index.py, on vectors
# shaped like the pretrained embeddings of the Grocery Store photos, found the
# smallest nprobe with recall@10 >= 0.95 to be 54 of nlist 1024 (50k vectors),
# ~96 of 2048 (200k) and 92 of 4096 (1M) for IVF-Flat at 1,280-d, and 68 of 2048
# (200k) and 54 of 4096 (1M) for half-float codes of the 256-d projection: it grows
# like sqrt(nlist), not nlist. The default is the power of two at or above
# 2·sqrt(nlist) (64, 128, 128 there; recall@10 0.971 and 0.977 for the projection at
# 200k and 1M), at least 8. IVF-PQ's recall is capped by its codes, not by nprobe. Callers can
# pass nprobe per query.
NPROBE_RULE = "power of two >= 2*sqrt(nlist), at least 8, at most nlist: recall@10 ~0.95"

EXAMPLES = (
    "'auto', 'IDMap2,Flat', 'IVF1024,Flat', 'PCA256,L2norm,IVF4096,SQfp16', 'IVF4096,PQ64', "
    "'OPQ64,IVF4096,PQ64', 'PCA256,L2norm,IVF16384_HNSW32,PQ64'"
)


@dataclass(frozen=True)
class IndexSpec:
    """A resolved index choice for one dimension and shard size.

    ``index_type`` is ``flat`` (exact), ``ivf_flat``, ``ivf_sq`` (scalar codes),
    ``ivf_pq`` or ``ivf`` (another IVF variant from an explicit string), or
    ``flat_codes`` (PQ/SQ without IVF).
    ``train_size`` is the number of vectors sampled to train it (0: no training).
    """

    factory: str
    index_type: str
    nlist: int
    default_nprobe: int
    train_size: int

    @property
    def is_ivf(self) -> bool:
        return self.nlist > 0


def nlist_for(n: int) -> int:
    """IVF list count for ``n`` vectors: ~4·sqrt(n), a power of two, >= 39 points each."""
    if n < MIN_POINTS_PER_CENTROID:
        return 1
    target = 4.0 * math.sqrt(n)
    nlist = 2 ** max(0, round(math.log2(target)))
    while nlist > 1 and n < MIN_POINTS_PER_CENTROID * nlist:
        nlist //= 2
    return min(nlist, MAX_NLIST)


def default_nprobe_for(nlist: int) -> int:
    """See :data:`NPROBE_RULE`."""
    target = 2 ** math.ceil(math.log2(2 * math.sqrt(max(nlist, 1))))
    return max(1, min(nlist, max(8, target)))


def pq_m_for(dim: int, target_bytes: int = PQ_TARGET_BYTES) -> int:
    """Largest divisor of ``dim`` not above ``target_bytes`` (8-bit codes: m bytes/vector)."""
    for m in range(min(dim, target_bytes), 0, -1):
        if dim % m == 0:
            return m
    return 1


def train_size_for(nlist: int, n: int, *, pq: bool = False) -> int:
    size = TRAIN_POINTS_PER_CENTROID * nlist
    if pq:
        size = max(size, PQ_TRAIN_POINTS)
    return min(n, size)


def projection_for(dim: int, n: int, index_dim: int = INDEX_DIM) -> str:
    """The factory prefix that makes ``dim``-d vectors ``index_dim``-d, or ``''`` for none.

    Only where it shrinks them and ``n`` vectors are enough to fit it (see
    :data:`PCA_POINTS_PER_DIM`).
    """
    if not index_dim or dim <= index_dim or n < PCA_POINTS_PER_DIM * index_dim:
        return ""
    return f"PCA{index_dim},L2norm,"


def auto_spec(
    n: int,
    dim: int,
    *,
    flat_threshold: int,
    pq_threshold: int,
    index_dim: int = INDEX_DIM,
    hnsw_nlist: int = HNSW_QUANTIZER_NLIST,
) -> IndexSpec:
    """The ``'auto'`` choice for a shard of ``n`` vectors (see the module docstring)."""
    if n < flat_threshold:
        return flat_spec(n, dim, index_dim=index_dim)
    nlist = nlist_for(n)
    graph = nlist >= hnsw_nlist
    if n < pq_threshold:
        return ivf_sq_spec(n, dim, nlist=nlist, index_dim=index_dim, graph_quantizer=graph)
    return ivf_pq_spec(n, dim, nlist=nlist, index_dim=index_dim, graph_quantizer=graph)


def ivf_prefix(nlist: int, *, graph_quantizer: bool = False) -> str:
    """``IVF{nlist}``, with ``_HNSW{M}`` when an HNSW graph over the centroids assigns."""
    return f"IVF{nlist}_HNSW{HNSW_M}" if graph_quantizer else f"IVF{nlist}"


def flat_spec(n: int = 0, dim: int = 0, *, index_dim: int = INDEX_DIM) -> IndexSpec:
    """Exact search; projected to ``index_dim`` when ``n`` vectors can fit it."""
    train = min(n, PQ_TRAIN_POINTS)
    projection = projection_for(dim, train, index_dim)
    return IndexSpec(f"IDMap2,{projection}Flat", "flat", nlist=0, default_nprobe=0,
                     train_size=train if projection else 0)  # fmt: skip


def ivf_flat_spec(n: int, dim: int, *, nlist: int | None = None) -> IndexSpec:
    nlist = nlist or nlist_for(n)
    return IndexSpec(
        f"IVF{nlist},Flat", "ivf_flat", nlist, default_nprobe_for(nlist), train_size_for(nlist, n)
    )


def ivf_sq_spec(
    n: int,
    dim: int,
    *,
    nlist: int | None = None,
    index_dim: int = INDEX_DIM,
    graph_quantizer: bool = False,
) -> IndexSpec:
    nlist = nlist or nlist_for(n)
    train = train_size_for(nlist, n)
    ivf = ivf_prefix(nlist, graph_quantizer=graph_quantizer)
    return IndexSpec(
        f"{projection_for(dim, train, index_dim)}{ivf},SQfp16",
        "ivf_sq",
        nlist,
        default_nprobe_for(nlist),
        train,
    )


def ivf_pq_spec(
    n: int,
    dim: int,
    *,
    nlist: int | None = None,
    index_dim: int = INDEX_DIM,
    graph_quantizer: bool = False,
) -> IndexSpec:
    nlist = nlist or nlist_for(n)
    train = train_size_for(nlist, n, pq=True)
    projection = projection_for(dim, train, index_dim)
    m = pq_m_for(index_dim if projection else dim)
    ivf = ivf_prefix(nlist, graph_quantizer=graph_quantizer)
    return IndexSpec(f"{projection}{ivf},PQ{m}", "ivf_pq", nlist, default_nprobe_for(nlist), train)


def resolve_spec(
    factory: str,
    n: int,
    dim: int,
    *,
    flat_threshold: int,
    pq_threshold: int,
    index_dim: int = INDEX_DIM,
    hnsw_nlist: int = HNSW_QUANTIZER_NLIST,
) -> IndexSpec:
    """``'auto'`` by shard size, or an explicit faiss factory string, validated."""
    if not isinstance(factory, str) or not factory.strip():
        raise FactoryError(f"index factory must be a non-empty string, e.g. {EXAMPLES}")
    if factory.strip().lower() == AUTO:
        return auto_spec(
            n,
            dim,
            flat_threshold=flat_threshold,
            pq_threshold=pq_threshold,
            index_dim=index_dim,
            hnsw_nlist=hnsw_nlist,
        )
    return explicit_spec(factory.strip(), dim, n=n)


def explicit_spec(factory: str, dim: int, *, n: int | None = None) -> IndexSpec:
    """Validate an explicit factory string by building it; raise :class:`FactoryError`."""
    index = _try_factory(factory, dim)
    if isinstance(_past_transforms(index), faiss.IndexRefine):
        raise FactoryError(
            f"index factory {factory!r} ends in a Refine stage, which cannot take our ids nor "
            f"remove vectors (the store updates indexes in place); use one of {EXAMPLES}"
        )
    ivf = _extract_ivf(index)
    if ivf is not None:
        concrete = faiss.downcast_index(ivf)
        if isinstance(concrete, faiss.IndexIVFFlat):
            kind = "ivf_flat"
        elif isinstance(concrete, faiss.IndexIVFScalarQuantizer):
            kind = "ivf_sq"
        elif isinstance(concrete, faiss.IndexIVFPQ | faiss.IndexIVFPQFastScan):
            kind = "ivf_pq"
        else:
            kind = "ivf"
        nlist = int(ivf.nlist)
        uses_pq = kind == "ivf_pq"
        train = train_size_for(nlist, n if n is not None else 2**62, pq=uses_pq)
        return IndexSpec(factory, kind, nlist, default_nprobe_for(nlist), train)

    concrete = faiss.downcast_index(index)
    if isinstance(concrete, faiss.IndexIDMap | faiss.IndexIDMap2):
        inner = faiss.downcast_index(concrete.index)
        wrapped = factory
    else:
        inner = concrete
        wrapped = f"IDMap2,{factory}"
    codes = _past_transforms(inner)
    if not isinstance(codes, faiss.IndexFlatCodes):
        raise FactoryError(
            f"index factory {factory!r} builds a {type(codes).__name__}, which cannot remove "
            f"vectors (the store updates indexes in place); use one of {EXAMPLES}"
        )
    kind = "flat" if isinstance(codes, faiss.IndexFlat) else "flat_codes"
    train = 0 if inner.is_trained else min(n if n is not None else 2**62, PQ_TRAIN_POINTS)
    return IndexSpec(wrapped, kind, nlist=0, default_nprobe=0, train_size=train)


def create_index(spec: IndexSpec, dim: int) -> faiss.Index:
    """A fresh, untrained index for ``spec`` (inner product metric).

    The factory turns on polysemous training for 8-bit PQ; it only serves Hamming
    filtering (``polysemous_ht``), which we do not use, and costs most of the
    training time, so it is switched off.
    """
    index = _try_factory(spec.factory, dim)
    ivf = _extract_ivf(index)
    inner = faiss.downcast_index(ivf) if ivf is not None else None
    if isinstance(inner, faiss.IndexIVFPQ):
        inner.do_polysemous_training = False
    quantizer = graph_quantizer(index)
    if quantizer is not None:
        quantizer.hnsw.efSearch = HNSW_TRAIN_EF
    return index


def ready_to_add(index: faiss.Index) -> None:
    """After training: a graph quantizer assigns added vectors at :data:`HNSW_ADD_EF`
    (kept in the file, so later incremental adds do the same)."""
    quantizer = graph_quantizer(index)
    if quantizer is not None:
        quantizer.hnsw.efSearch = HNSW_ADD_EF


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index inside ``index`` (through IDMap/OPQ wrappers), or ``None``."""
    return _extract_ivf(index)


def prefer_low_latency(index: faiss.Index) -> None:
    """Let one query use several OpenMP threads (faiss ``parallel_mode`` 1).

    By default faiss splits a batch over threads by query, so a single query runs
    on one core; mode 1 splits each query's probed lists over the threads. Measured
    on 2 idle cores: single-query latency 1.7x lower, batch throughput unchanged;
    on busy cores much worse (see :mod:`indexer.index.searcher`).
    """
    ivf = _extract_ivf(index)
    if ivf is not None:
        ivf.parallel_mode = 1


def search_parameters(
    index: faiss.Index, nprobe: int | None, selector: faiss.IDSelector | None = None
) -> faiss.SearchParameters | None:
    """Per-call search parameters (thread-safe, unlike setting ``index.nprobe``).

    ``selector``: only ids it holds can be found (faiss skips the others' codes). The
    caller keeps it alive until the search returns: the parameters only point to it.
    """
    if _extract_ivf(index) is not None and nprobe is not None:
        params = faiss.SearchParametersIVF(nprobe=int(nprobe))
        coarse = quantizer_parameters(index, nprobe)
        if coarse is not None:  # an HNSW quantizer: how wide its graph search goes
            params.quantizer_params = coarse
            params.referenced_objects = [coarse]  # params only points to it
    elif selector is not None:
        params = faiss.SearchParameters()
    else:
        return None
    if selector is not None:
        params.sel = selector
    return params


def _try_factory(factory: str, dim: int) -> faiss.Index:
    try:
        return faiss.index_factory(dim, factory, METRIC)
    except RuntimeError as exc:
        reason = _faiss_reason(exc)
        raise FactoryError(
            f"invalid faiss index factory string {factory!r} for dim {dim}: {reason}. "
            f"Examples: {EXAMPLES}"
        ) from None


def _past_transforms(index: faiss.Index) -> faiss.Index:
    """The index behind any ``PCA``/``OPQ``/``L2norm`` transforms in front of it."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index


def _extract_ivf(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _faiss_reason(exc: BaseException) -> str:
    """faiss errors start with the C++ function and source location; keep the rest."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else repr(exc)
    return _FAISS_LOCATION.sub("", text).strip() or text

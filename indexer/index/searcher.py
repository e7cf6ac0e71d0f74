"""Search every shard of a loaded index in parallel and merge the top-k.

faiss releases the GIL while it searches, so a thread per shard runs the shards
concurrently; each shard search of a batch may itself use OpenMP threads, and the
product of the two is kept near the core count (oversubscription makes faiss slower,
not faster). A search of a few queries (an API request) runs on one OpenMP thread:
the server's concurrent requests use the cores, and threads only cost it CPU
(:data:`SERIAL_QUERIES`). ``low_latency=True`` lets spare OpenMP threads split a single query's
inverted lists between them (faiss ``parallel_mode`` 1): 1.7x lower single-query
latency on an idle 2-core machine, but up to 8x *higher* when other processes
compete for the cores (each query then waits for a descheduled thread at a
barrier), so it is off by default. ``nprobe`` is passed per call as
``SearchParametersIVF``, so concurrent requests with different ``nprobe`` never
race on shared index state.

``within`` restricts a search to a set of vector ids (a label's or a product's
items, from the catalog) inside faiss itself (an ``IDSelectorBatch`` in the search
parameters), so a filter matching one item in a million still finds it. An IVF
index probes more lists the smaller the set: ``nprobe / fraction`` of its lists
(as many members as an unfiltered search sees), and all of them when that exceeds
``nlist`` or the set holds at most :data:`EXACT_WITHIN` ids, so a selective filter
is exact: every member's score is computed. Probing every list is exact with any
coarse quantizer: an HNSW graph over the centroids (``IVF…_HNSW32``) is approximate
even when asked for all lists, so then the lists are assigned with exact centroid
scores instead (:func:`~indexer.index.coarse.search_assigned_exactly`, which also
assigns every query of a graph-quantized index below 16,384 lists).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from indexer.config import MAX_K  # the deepest one search goes; the setting is below it
from indexer.index.coarse import graph_quantizer, search_assigned_exactly
from indexer.index.factory import prefer_low_latency, search_parameters
from indexer.index.versions import LoadedIndex

log = logging.getLogger(__name__)

# A filter of at most this many ids probes every inverted list: exact, and cheap,
# since only members' codes are scored (the rest cost one membership test each).
EXACT_WITHIN = 10_000
# Up to this many queries a search runs on one OpenMP thread: faiss splits a batch over
# threads by query, so a single query gains nothing from more, while the projection's
# BLAS call spreads one row over them: measured on 2 busy cores, 10x the CPU of one
# thread (0.49 against 0.05 ms per query; the PCA alone 3.1 against 0.04 ms).
SERIAL_QUERIES = 4
_SHARED_PARAMETERS = 1024  # (shard, nprobe) pairs whose search parameters are kept
_UNSET = object()


class ShardedSearcher:
    """Exact-merge top-k search over the shards of one :class:`LoadedIndex`.

    ``threads``: shard searches run at once (0: one per shard, capped at the CPU
    count); ``omp_threads``: faiss threads per shard search (default: cores / threads);
    ``low_latency``: split each query's lists over those threads (see module doc).
    Results: ``scores`` (inner products, descending) and ``ids`` (int64),
    both ``[n, k]``; where fewer than ``k`` vectors exist, ids are -1 and scores -inf.
    """

    def __init__(
        self,
        index: LoadedIndex,
        threads: int = 0,
        *,
        omp_threads: int | None = None,
        low_latency: bool = False,
    ):
        self.index = index
        cores = os.cpu_count() or 1
        n_shards = len(index.shards)
        self.threads = max(1, min(threads or min(n_shards, cores), n_shards))
        self.omp_threads = omp_threads or max(1, cores // self.threads)
        self.low_latency = low_latency and self.omp_threads > 1
        self._graphs = [graph_quantizer(shard) is not None for shard in index.shards]
        self._shared_parameters: dict[tuple[int, int | None], object] = {}
        if self.low_latency:
            for shard in index.shards:
                prefer_low_latency(shard)
        self._pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="shard-search")
            if self.threads > 1
            else None
        )
        log.debug(
            "searcher for %s: %d shards, %d threads x %d omp threads",
            index.version,
            n_shards,
            self.threads,
            self.omp_threads,
        )

    @property
    def version(self) -> str:
        return self.index.version

    @property
    def dim(self) -> int:
        return self.index.dim

    def search(
        self, queries: np.ndarray, k: int, nprobe: int | None = None, *,
        within: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product for each query row; ``nprobe`` defaults per index.

        ``within``: only these vector ids (int64) can be found (see the module doc);
        an empty set finds nothing.
        """
        queries = self._check_queries(queries)
        k = self._check_k(k)
        nprobe = self._check_nprobe(nprobe)
        shards = self.index.shards
        selector = None
        if within is not None:
            within = np.ascontiguousarray(np.unique(np.asarray(within, dtype=np.int64)))
            if len(within) == 0:
                return (np.full((len(queries), k), -np.inf, dtype=np.float32),
                        np.full((len(queries), k), -1, dtype=np.int64))
            selector = faiss.IDSelectorBatch(len(within), faiss.swig_ptr(within))
            nprobe = self._nprobe_within(nprobe, len(within))
        params = [self._parameters(i, nprobe, selector) for i in range(len(shards))]

        omp_threads = (self.omp_threads
                       if self.low_latency or len(queries) > SERIAL_QUERIES else 1)

        def one(i: int) -> tuple[np.ndarray, np.ndarray]:
            # libgomp keeps the thread count per calling thread (a request thread, a shard
            # thread), so it is set where the search runs, each time.
            faiss.omp_set_num_threads(omp_threads)
            if nprobe is not None and self._graphs[i]:  # assign queries exactly?
                found = search_assigned_exactly(shards[i], queries, k, params[i], nprobe)
                if found is not None:
                    return found
            # faiss.contrib.torch_utils (imported by pytorch-metric-learning) replaces
            # Index.search with a wrapper that takes no `params`; it keeps the original
            # as `search_numpy`.
            search = getattr(shards[i], "search_numpy", shards[i].search)
            return search(queries, k, params=params[i])

        if len(shards) == 1:
            scores, ids = one(0)
        else:
            mapper = self._pool.map if self._pool is not None else map
            heap = faiss.ResultHeap(len(queries), k, keep_max=True)
            for shard_scores, shard_ids in mapper(one, range(len(shards))):
                heap.add_result(shard_scores, shard_ids)
            heap.finalize()
            scores, ids = heap.D, heap.I
        del selector, within  # the parameters point into both until the searches return
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32, copy=False)
        return scores, ids

    def _parameters(self, shard: int, nprobe: int | None,
                    selector: faiss.IDSelector | None) -> faiss.SearchParameters | None:
        """The search parameters of one shard; those without a selector are made once per
        ``nprobe`` and shared (faiss only reads them), not per query."""
        if selector is not None:
            return search_parameters(self.index.shards[shard], nprobe, selector)
        key = (shard, nprobe)
        params = self._shared_parameters.get(key, _UNSET)
        if params is _UNSET:
            params = search_parameters(self.index.shards[shard], nprobe)
            if len(self._shared_parameters) < _SHARED_PARAMETERS:
                self._shared_parameters[key] = params
        return params

    def _nprobe_within(self, nprobe: int | None, members: int) -> int | None:
        """Lists to probe for a search restricted to ``members`` ids (module doc)."""
        if nprobe is None:  # exact index
            return None
        nlist = self.index.nlist
        total = max(1, self.index.manifest.total)
        if members <= EXACT_WITHIN:
            return nlist
        return min(nlist, max(nprobe, math.ceil(nprobe * total / members)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> ShardedSearcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- validation at the boundary ----------------------------------------------

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        array = np.asarray(queries)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"queries must be [n, {self.dim}] or [{self.dim}], got {array.shape}")
        if array.shape[1] != self.dim:
            raise ValueError(
                f"queries have dimension {array.shape[1]}, index {self.version} has {self.dim}"
            )
        if len(array) == 0:
            raise ValueError("no queries given")
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError("queries contain NaN or infinite values")
        return array

    @staticmethod
    def _check_k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        return int(k)

    def _check_nprobe(self, nprobe: int | None) -> int | None:
        nlist = self.index.nlist
        if nlist == 0:  # exact index: nothing to probe
            return None
        if nprobe is None:
            return self.index.default_nprobe
        if isinstance(nprobe, bool) or not isinstance(nprobe, int | np.integer):
            raise ValueError(f"nprobe must be an integer from 1 to {nlist}, got {nprobe!r}")
        if not 1 <= nprobe <= nlist:
            raise ValueError(f"nprobe must be from 1 to nlist={nlist}, got {nprobe}")
        return int(nprobe)

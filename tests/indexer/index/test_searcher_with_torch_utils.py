"""Search works after faiss.contrib.torch_utils patched faiss (pytorch-metric-learning does).

That module replaces ``Index.search`` process-wide with a wrapper that has no
``params`` argument; the searcher must keep using faiss's own method.
"""

from __future__ import annotations

import faiss.contrib.torch_utils  # noqa: F401  (the patch under test)
import numpy as np

from indexer.index.searcher import ShardedSearcher


def test_search_with_nprobe_after_the_torch_patch(store, synth):
    ids, vectors = synth.random_ids(3_000), synth.clustered(3_000, 16)
    version = store.build(ids, vectors, model_version="m1", n_shards=2, factory="IVF16,Flat")
    with ShardedSearcher(store.load(version)) as searcher:
        scores, found = searcher.search(vectors[:5], 3, nprobe=16)
    assert (found[:, 0] == ids[:5]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)

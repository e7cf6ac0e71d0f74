"""Index choice by shard size, nlist/nprobe/PQ rules, and explicit factory strings."""

from __future__ import annotations

import faiss
import pytest

from indexer.index.errors import FactoryError
from indexer.index.factory import (
    MIN_POINTS_PER_CENTROID,
    create_index,
    default_nprobe_for,
    nlist_for,
    pq_m_for,
    resolve_spec,
)

THRESHOLDS = {"flat_threshold": 50_000, "pq_threshold": 2_000_000}


def test_auto_picks_flat_then_ivf_half_floats_then_ivf_pq_by_shard_size():
    small = resolve_spec("auto", 49_999, 1280, **THRESHOLDS)
    assert (small.factory, small.index_type, small.nlist) == (
        "IDMap2,PCA256,L2norm,Flat", "flat", 0)  # fmt: skip
    assert small.train_size == 49_999  # the projection is fitted on every vector
    tiny = resolve_spec("auto", 2_000, 1280, **THRESHOLDS)  # too few to fit 256 components
    assert (tiny.factory, tiny.train_size) == ("IDMap2,Flat", 0)

    medium = resolve_spec("auto", 50_000, 1280, **THRESHOLDS)
    assert medium.index_type == "ivf_sq"
    assert medium.factory == f"PCA256,L2norm,IVF{medium.nlist},SQfp16"

    million = resolve_spec("auto", 1_000_000, 1280, **THRESHOLDS)
    assert million.factory == "PCA256,L2norm,IVF4096,SQfp16"

    large = resolve_spec("AUTO", 2_000_000, 1280, **THRESHOLDS)
    assert large.index_type == "ivf_pq"
    assert large.factory == f"PCA256,L2norm,IVF{large.nlist},PQ64"
    assert large.train_size >= 256 * 256  # enough points for 8-bit PQ codebooks


def test_auto_assigns_lists_with_an_hnsw_graph_from_hnsw_nlist_up():
    at_10m = resolve_spec("auto", 10_000_000, 1280, **THRESHOLDS)
    assert at_10m.factory == "PCA256,L2norm,IVF16384_HNSW32,PQ64"
    assert (at_10m.index_type, at_10m.nlist) == ("ivf_pq", 16_384)
    assert "HNSW" not in resolve_spec("auto", 1_000_000, 1280, **THRESHOLDS).factory
    low = resolve_spec("auto", 1_000_000, 1280, hnsw_nlist=4_096, **THRESHOLDS)
    assert low.factory == "PCA256,L2norm,IVF4096_HNSW32,SQfp16"
    assert low.index_type == "ivf_sq"


def test_auto_projects_only_vectors_wider_than_index_dim_with_enough_points_to_fit():
    assert resolve_spec("auto", 1_000_000, 256, **THRESHOLDS).factory == "IVF4096,SQfp16"
    assert resolve_spec("auto", 1_000_000, 1280, index_dim=512, **THRESHOLDS).factory == (
        "PCA512,L2norm,IVF4096,SQfp16")  # fmt: skip
    assert resolve_spec("auto", 1_000_000, 1280, index_dim=0, **THRESHOLDS).factory == (
        "IVF4096,SQfp16")  # fmt: skip
    # 2,000 vectors are too few to fit 256 components (8 points per component)
    few = resolve_spec("auto", 2_000, 1280, flat_threshold=1_000, pq_threshold=10**6)
    assert few.factory == f"IVF{few.nlist},SQfp16"


@pytest.mark.parametrize("n", [39, 100, 1_000, 20_000, 50_000, 123_457, 1_000_000, 10**8])
def test_nlist_is_a_power_of_two_near_4_sqrt_n_with_39_points_per_centroid(n):
    nlist = nlist_for(n)
    assert nlist & (nlist - 1) == 0
    assert n >= MIN_POINTS_PER_CENTROID * nlist
    assert nlist <= 2 * 4 * n**0.5


def test_pq_m_divides_dim_near_64_bytes():
    assert pq_m_for(1280) == 64
    assert pq_m_for(256) == 64
    assert pq_m_for(100) == 50
    assert pq_m_for(48) == 48


def test_default_nprobe_grows_with_nlist_and_stays_in_range():
    assert default_nprobe_for(1) == 1
    assert default_nprobe_for(16) == 8
    assert default_nprobe_for(64) == 16
    assert default_nprobe_for(1024) == 64
    assert default_nprobe_for(2048) == 128  # 2·sqrt(2048) = 90.5, rounded up
    assert default_nprobe_for(4096) == 128
    assert all(1 <= default_nprobe_for(2**i) <= 2**i for i in range(17))


@pytest.mark.parametrize(
    ("factory", "expected", "kind", "nlist"),
    [
        ("Flat", "IDMap2,Flat", "flat", 0),
        ("IDMap2,Flat", "IDMap2,Flat", "flat", 0),
        ("SQ8", "IDMap2,SQ8", "flat_codes", 0),
        ("IVF64,Flat", "IVF64,Flat", "ivf_flat", 64),
        ("IVF64,PQ16", "IVF64,PQ16", "ivf_pq", 64),
        ("OPQ16,IVF64,PQ16", "OPQ16,IVF64,PQ16", "ivf_pq", 64),
        ("IVF64,SQ8", "IVF64,SQ8", "ivf_sq", 64),
        ("PCA16,L2norm,IVF64,SQfp16", "PCA16,L2norm,IVF64,SQfp16", "ivf_sq", 64),
        ("IVF64,PQ8x4fs", "IVF64,PQ8x4fs", "ivf_pq", 64),
        ("PCA16,Flat", "IDMap2,PCA16,Flat", "flat", 0),
        ("IVF64,RaBitQ", "IVF64,RaBitQ", "ivf", 64),
        ("IVF64_HNSW32,PQ16", "IVF64_HNSW32,PQ16", "ivf_pq", 64),
        ("PCA16,L2norm,IVF64_HNSW32,SQfp16", "PCA16,L2norm,IVF64_HNSW32,SQfp16", "ivf_sq", 64),
    ],
)
def test_explicit_factory_strings_are_validated_and_normalised(factory, expected, kind, nlist):
    spec = resolve_spec(factory, 10_000, 64, **THRESHOLDS)
    assert (spec.factory, spec.index_type, spec.nlist) == (expected, kind, nlist)
    index = create_index(spec, 64)
    assert index.metric_type == faiss.METRIC_INNER_PRODUCT


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        ("IVF64,Flaat", "could not parse"),
        ("IVF64,PQ7", "multiple of the number of subquantizers"),
        ("HNSW32", "cannot remove vectors"),
        ("IVF64,PQ8x4fs,RFlat", "Refine stage"),
        ("", "non-empty"),
    ],
)
def test_invalid_or_unsupported_factory_strings_raise_clearly(factory, message):
    with pytest.raises(FactoryError, match=message) as info:
        resolve_spec(factory, 10_000, 64, **THRESHOLDS)
    assert isinstance(info.value, ValueError)
    if factory:
        assert repr(factory) in str(info.value)

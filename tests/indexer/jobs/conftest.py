"""Fixtures of the job tests: the tiny model, a local shop, an engine, an indexed catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs_harness import make_settings, serve_images, write_manifest
from local_http import LocalServer
from training_factory import write_tiny_model

from indexer import jobs
from indexer.engine import Lookalike


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """timm's test_efficientnet, random weights, 256-d pooled features: a real model, fast."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def shop():
    with LocalServer() as server:
        yield server


@pytest.fixture
def engine(tmp_path, tiny_model):
    with Lookalike.open(make_settings(tmp_path, tiny_model)) as opened:
        yield opened


@pytest.fixture
def indexed(engine, shop, tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", serve_images(shop, range(16)))
    job = jobs.submit_source(engine.catalog, engine.settings, manifest)
    assert jobs.run_inline(engine, job.id).job.status == "done"
    return engine

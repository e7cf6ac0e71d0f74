"""An indexed sample catalogue on the real pretrained model, shared by the API tests.

The model loads once per session; engines for other homes reuse it (``cached_property``
values copied over), so a fresh home costs milliseconds, not a model load.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.config import Settings
from indexer.engine import Lookalike
from search_api import create_app

# The worker tests' harness (real worker processes, Redis) for the end-to-end tests, and
# this folder's own (gunicorn_harness: a real server).
for _harness in (Path(__file__).resolve().parents[1] / "workers", Path(__file__).parent):
    if str(_harness) not in sys.path:
        sys.path.append(str(_harness))
from worker_harness import make_setup, procs, redis_prefix, redis_url, tiny_model  # noqa: E402, F401, I001

API_KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def api_settings(home: Path, **overrides) -> Settings:
    values = dict(home=home, batch_size=8, api_key=API_KEY, database_url=None, device="cpu")
    values.update(overrides)
    return Settings(_env_file=None, **values)


def sharing_model(settings: Settings, donor: Lookalike) -> Lookalike:
    """An engine for another home that reuses ``donor``'s loaded model."""
    engine = Lookalike.open(settings)
    engine.__dict__["model"] = donor.model
    engine.__dict__["embedder"] = donor.embedder
    return engine


def index_sample(engine: Lookalike, folder: Path) -> Lookalike:
    """``engine`` with ``folder`` taken in, embedded and indexed."""
    engine.ingest(folder)
    engine.embed()
    engine.build_index()
    return engine


@pytest.fixture(scope="session")
def sample_folder(sample_catalogue) -> Path:
    return sample_catalogue(products=4, shots=3, seed=3)


@pytest.fixture(scope="session")
def indexed(tmp_path_factory, sample_folder) -> Iterator[Lookalike]:
    """A home with 12 indexed items (4 products x 3 shots). Tests must not change it."""
    home = tmp_path_factory.mktemp("indexed") / "home"
    engine = index_sample(Lookalike.open(api_settings(home)), sample_folder)
    yield engine
    engine.close()


@pytest.fixture
def client(indexed):
    return create_app(engine=indexed).test_client()


@pytest.fixture
def fresh(tmp_path, indexed, sample_folder) -> Iterator[Lookalike]:
    """A private indexed home (same sample, same model), for tests that change things."""
    engine = index_sample(sharing_model(api_settings(tmp_path / "home"), indexed), sample_folder)
    yield engine
    engine.close()


@pytest.fixture
def auth() -> dict[str, str]:
    return dict(AUTH)


@pytest.fixture
def home_for(tmp_path, indexed):
    """``home_for(name, **settings)``: an engine for an empty home sharing the loaded model."""
    opened = []

    def make(name: str = "empty", **overrides) -> Lookalike:
        engine = sharing_model(api_settings(tmp_path / name, **overrides), indexed)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        engine.close()


@pytest.fixture
def writer(fresh, indexed) -> Iterator[Lookalike]:
    """A second engine on ``fresh``'s home, as a worker process would hold it."""
    engine = sharing_model(fresh.settings, indexed)
    yield engine
    engine.close()

"""Shared fixtures: settings in a temporary home, and catalog URLs for every backend.

PostgreSQL is a real server (``LOOKALIKE_TEST_POSTGRES_URL``, default: the local
one). Each test gets a fresh schema (``postgres_support.fresh_schema``), dropped
afterwards. An unreachable server makes the tests error out: it never skips them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.config import Settings
from indexer.sample import write_sample_catalogue

# Helper modules beside this file (``images_factory``) import by plain name. Not
# `pythonpath = ["tests"]`: under importlib mode that would name tests/indexer/...
# modules ``indexer.*`` and shadow the real package.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.append(_TESTS_DIR)

from postgres_support import fresh_schema  # noqa: E402 (beside this file)
from redis_support import PrivateRedis  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def shared_runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One runtime cache for the whole session (``LOOKALIKE_CACHE_DIR``): the pretrained
    model's ONNX export and the runtime measurement happen once, not in every test's home.
    Worker processes the tests start inherit it."""
    cache = tmp_path_factory.mktemp("runtime-cache")
    before = os.environ.get("LOOKALIKE_CACHE_DIR")
    os.environ["LOOKALIKE_CACHE_DIR"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("LOOKALIKE_CACHE_DIR", None)
    else:
        os.environ["LOOKALIKE_CACHE_DIR"] = before


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a private data directory (``tmp_path/home``) and the default SQLite catalog."""
    return Settings(home=tmp_path / "home", database_url=None, _env_file=None)


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh, empty schema."""
    with fresh_schema() as url:
        yield url


@pytest.fixture(scope="session")
def sample_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``sample_catalogue(products=, shots=, seed=)``: a folder of generated product photos
    (``indexer.sample``), written once a session for each set of arguments. Read only."""
    written: dict[tuple[int, int, int], Path] = {}

    def folder(*, products: int, shots: int, seed: int) -> Path:
        key = (products, shots, seed)
        if key not in written:
            written[key] = tmp_path_factory.mktemp("catalogue")
            write_sample_catalogue(written[key], products=products, shots=shots, seed=seed)
        return written[key]

    return folder


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against an SQLite file and a real PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog' / 'catalog.sqlite3'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own on a free port, for tests that stop or kill it."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()

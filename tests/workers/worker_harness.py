"""Real worker processes, a real Redis, a real HTTP server: the harness of the worker tests.

Fixtures are registered by ``conftest.py``; tests import the helpers (``wait_for_job``,
``WAIT``) from here by name.

Every worker runs in its own process group (``lookalike worker`` and its pool
children); the :func:`procs` fixture ends every group it started, SIGKILL if it
must, so no worker outlives its test. Redis tests use a unique key prefix and
delete their keys afterwards; a Redis that is not running fails them (never a
skip). Settings reach the workers as ``LOOKALIKE_*`` variables built from the
same dict that builds the test's own :class:`Settings`.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import images_factory
import pytest
from local_http import LocalServer
from redis_support import own_prefix
from training_factory import write_tiny_model

from indexer.catalog import Catalog
from indexer.config import Settings

REDIS_URL = os.environ.get("LOOKALIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The console script, not `python -m`: that puts the working directory on sys.path,
# where a folder named like a package (a data directory called "workers") would shadow it.
LOOKALIKE = [str(Path(sys.executable).with_name("lookalike"))]
WAIT = 90.0  # seconds any one wait may take before the test fails with the logs


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """timm's test_efficientnet with random weights: 256-d vectors, milliseconds per image."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@dataclass
class Shop:
    """A local web shop: ``/img/N.jpg`` is a generated photo (seed N)."""

    server: LocalServer

    def urls(self, seeds) -> list[str]:
        for seed in seeds:
            self.server.serve(f"/img/{seed}.jpg", images_factory.jpeg_bytes(seed=seed))
        return [self.server.url(f"/img/{seed}.jpg") for seed in seeds]

    def manifest(self, path: Path, seeds) -> Path:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_url", "product_id"])
            for seed, url in zip(seeds, self.urls(seeds), strict=True):
                writer.writerow([url, f"p{seed}"])
        return path


@pytest.fixture
def shop() -> Iterator[Shop]:
    with LocalServer() as server:
        yield Shop(server)


@dataclass
class Setup:
    """One deployment: its settings (for the test) and the same as environment (for workers)."""

    values: dict
    home: Path

    @property
    def settings(self) -> Settings:
        return Settings(**self.values, _env_file=None)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
        for name, value in self.values.items():
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, list | bool) else str(value)
            env[f"LOOKALIKE_{name.upper()}"] = text
        env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        return env

    def catalog(self) -> Catalog:
        return Catalog(self.settings)

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """This deployment's LOOKALIKE_* variables in this process (for the CLI's main())."""
        for name in [n for n in os.environ if n.startswith("LOOKALIKE_")]:
            monkeypatch.delenv(name)
        for name, value in self.env().items():
            if name.startswith("LOOKALIKE_"):
                monkeypatch.setenv(name, value)
        monkeypatch.chdir(self.home.parent)  # no stray .env file


def deployment_setup(home: Path, model: Path, /, **overrides) -> Setup:
    """A deployment in ``home`` on ``model`` (CPU, fp32), fetching from 127.0.0.0/8 at once,
    with short time limits and nothing scheduled unless ``overrides`` say so."""
    values = dict(
        home=str(home), model=str(model), device="cpu", precision="fp32",
        loader_workers=0, batch_size=32, fetch_allow_networks=["127.0.0.0/8"],
        fetch_per_host_interval=0, fetch_respect_robots=False, fetch_retries=1,
        fetch_backoff=0.1, ingest_chunk_size=25, recrawl_interval=0, reindex_interval=0,
        sweep_interval=0, stalled_after=600, task_soft_time_limit=40, task_time_limit=50,
        reindex_time_limit=50, broker_visibility_timeout=60, broker_restore_interval=1,
    )  # fmt: skip
    values.update(overrides)
    return Setup(values, home)


@pytest.fixture
def make_setup(tmp_path, tiny_model) -> Callable[..., Setup]:
    def build(**overrides) -> Setup:
        return deployment_setup(tmp_path / "home", tiny_model, **overrides)

    return build


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the test Redis; its keys are deleted afterwards."""
    with own_prefix("lookalike-test-", REDIS_URL) as (_client, prefix):
        yield prefix


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, needle: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.popen.returncode}:\n"
                                     f"{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {needle!r} in {timeout} s:\n"
                                     f"{self.text()[-4000:]}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its pool children)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGTERM)  # warm shutdown first
                self.popen.wait(3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill(signal.SIGKILL)  # children too, whatever state they are in


class Procs:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> Proc:
        log = self.folder / f"{name}-{len(self.started)}.log"
        handle = log.open("w")
        popen = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )
        handle.close()
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def worker(self, setup: Setup, *options: str, name: str = "worker",
               launcher: list[str] | None = None, env: dict[str, str] | None = None) -> Proc:
        proc = self.start(name, [*(launcher or LOOKALIKE), "worker", *options],
                          {**setup.env(), **(env or {})}, setup.home.parent)
        proc.wait_for(" ready.")
        return proc

    def beat(self, setup: Setup) -> Proc:
        proc = self.start("beat", [*LOOKALIKE, "beat", "--loglevel", "INFO"], setup.env(),
                          setup.home.parent)
        proc.wait_for("beat: Starting")
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log.name})\n{p.text()[-3000:]}"
                         for p in self.started)

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def wait_for_job(setup: Setup, job_id: int, procs: Procs, timeout: float = WAIT,
                 until: Callable[[object], bool] | None = None):
    """Poll the catalog until the job is finished (or ``until(progress)``); return its progress."""
    from indexer import jobs

    deadline = time.monotonic() + timeout
    with setup.catalog() as catalog:
        while True:
            state = jobs.progress(catalog, job_id)
            if (until(state) if until is not None else state.job.finished):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not there after {timeout} s: "
                                     f"{state.job.status} {state.summary()}\n{procs.logs()}")
            time.sleep(0.2)


def vector_state(settings):
    """(live ids, their appends over all parts, ids in the index, indexed items)."""
    import faiss
    import numpy as np

    from indexer.engine import Lookalike

    with Lookalike.open(settings) as engine:
        ids, _ = engine.vectors.load()
        appended = sum(len(p.ids) for p in engine.vectors.iter_parts(vectors=False))
        loaded = engine.indexes.load()
        in_index = np.concatenate([faiss.vector_to_array(s.id_map) for s in loaded.shards])
        return ids, appended, in_index, engine.catalog.counts()["indexed"]

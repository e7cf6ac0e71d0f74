"""A real gunicorn serving the API in a test: its command, a free port, waiting for it, its workers.

Started through the worker harness's ``procs`` fixture (its own process group, ended
with the test); the helpers here only find and wait.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import urllib3
from worker_harness import WAIT, Setup  # on sys.path through conftest.py, with its fixtures

from indexer.engine import Lookalike
from indexer.sample import write_sample_catalogue

REPO = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
DEPLOY_CONFIG = str(REPO / "deploy" / "gunicorn.conf.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(http: urllib3.PoolManager, base: str, api) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            if http.request("GET", f"{base}/healthz", retries=False).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        if api.popen.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gunicorn did not come up:\n{api.text()[-4000:]}")
        time.sleep(0.2)


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (a gunicorn master's: its workers)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":  # fields: state, ppid, ...
            found.add(int(stat.parent.name))
    return found


def indexed_server(folder: Path, model: Path, procs, **overrides) -> tuple[str, object, Setup]:
    """gunicorn (deploy/gunicorn.conf.py) over a home with a small catalogue indexed by
    ``model`` (the tiny test model: no pretrained backbone); returns its base URL, its
    process and the deployment (``Setup``). ``overrides``: more settings (workers, threads,
    limits)."""
    home = folder / "home"
    values = dict(
        home=str(home), model=str(model), device="cpu", precision="fp32", loader_workers=0,
        batch_size=32, api_bind=f"127.0.0.1:{free_port()}", api_workers=1, api_threads=2,
    )  # fmt: skip
    values.update(overrides)
    setup = Setup(values, home)
    images = folder / "catalogue"
    write_sample_catalogue(images, products=3, shots=2, seed=5)
    engine = Lookalike.open(setup.settings)
    try:
        engine.ingest(images)
        engine.embed()
        engine.build_index()
    finally:
        engine.close()
    api = procs.start("gunicorn", [GUNICORN, "-c", DEPLOY_CONFIG], setup.env(), folder)
    base = f"http://{setup.settings.api_bind}"
    wait_until_up(urllib3.PoolManager(), base, api)
    return base, api, setup

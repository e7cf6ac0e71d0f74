"""A real Lookalike site for browser tests: an indexed home, ``lookalike serve``, a browser.

The home holds a small sample catalogue ingested from a manifest (titles and
labels included, one title with markup in it), embedded with the tiny test model
(it loads in a fraction of the pretrained model's time), indexed, and mapped.
The server is the real console script under gunicorn, in its own process group.
"""

from __future__ import annotations

import csv
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3
from worker_harness import LOOKALIKE, WAIT, Proc, Procs, Setup

from indexer import maps
from indexer.engine import Lookalike
from indexer.sample import write_sample_catalogue

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
KEY = "browser-key-0123456789abcdef"
SCRIPT_TITLE = "<script>alert(1)</script> Deluxe teapot"
LABELS = ("kitchen", "garden", "lighting")
CHROMIUM = "/usr/bin/chromium"
# This machine's network is closed: no QUIC, no background fetches, no component updates.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Catalogue:
    manifest: Path
    photos: dict[str, list[Path]]  # product id → its shots
    titles: dict[str, str]
    labels: dict[str, str]


def write_manifest_catalogue(folder: Path, products: int = 5, shots: int = 3) -> Catalogue:
    """Sample photos plus a manifest naming them with product ids, labels and titles."""
    written = write_sample_catalogue(folder / "photos", products=products, shots=shots, seed=7)
    photos: dict[str, list[Path]] = {}
    for path in written:
        photos.setdefault(path.parent.name, []).append(path)
    titles, labels = {}, {}
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "product_id", "label", "title"])
        for number, (product, paths) in enumerate(sorted(photos.items())):
            titles[product] = SCRIPT_TITLE if number == 0 else f"Sample {product.replace('-', ' ')}"
            labels[product] = LABELS[number % len(LABELS)]
            for path in paths:
                writer.writerow([str(path), product, labels[product], titles[product]])
    return Catalogue(manifest, photos, titles, labels)


def settings_values(home: Path, tiny_model: Path, port: int, **overrides) -> dict:
    values = dict(
        home=str(home), model=str(tiny_model), device="cpu", precision="fp32", loader_workers=0,
        batch_size=32, api_key=KEY, api_bind=f"127.0.0.1:{port}", api_workers=1, api_threads=4,
        fetch_allow_networks=["127.0.0.0/8"], fetch_per_host_interval=0,
        fetch_respect_robots=False, fetch_retries=0, ingest_chunk_size=25, recrawl_interval=0,
        reindex_interval=0, sweep_interval=0, stalled_after=600, map_max_points=500,
    )  # fmt: skip
    values.update(overrides)
    return values


def build_home(setup: Setup, catalogue: Catalogue) -> str:
    """Ingest, embed, index and map the catalogue; the index version."""
    engine = Lookalike.open(setup.settings)
    try:
        engine.ingest(catalogue.manifest)
        engine.embed()
        version = engine.build_index()
        maps.ensure_map(engine.settings, engine.catalog, version)
    finally:
        engine.close()
    return version


@dataclass
class Server:
    proc: Proc
    base: str

    def wait_ready(self) -> Server:
        """Wait until it answers ``/readyz`` (model and index loaded); fail with its log."""
        http = urllib3.PoolManager()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                answer = http.request("GET", self.base + "/readyz", retries=False, timeout=2)
                if answer.status == 200:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            if self.proc.popen.poll() is not None or time.monotonic() > deadline:
                log = self.proc.text()[-4000:]
                raise AssertionError(f"lookalike serve did not come up:\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.stop()


def start_server(procs: Procs, setup: Setup) -> Server:
    """``lookalike serve`` on ``setup``'s home and address; call :meth:`Server.wait_ready`."""
    proc = procs.start("serve", [*LOOKALIKE, "serve"], setup.env(), setup.home.parent)
    return Server(proc, "http://" + setup.values["api_bind"])

"""HTTP API benchmark: gunicorn under a load generator against the same searches in-process.

Builds a home with ``--n`` indexed vectors (a real sample catalogue embedded by the
current model, the rest synthetic unit vectors with catalog rows), starts gunicorn
with ``deploy/gunicorn.conf.py``, and drives it with a load generator: ``--clients``
processes, each with one keep-alive connection, sending requests back to back for
``--duration`` seconds (closed loop). Reports p50/p99 latency and requests/s for
search by item id and by uploaded image, next to the in-process time of the same
searches (item → vector lookup, sharded search, catalog join; for an image also
decode and embed) in the same run::

    .venv/bin/python tests/bench/bench_api.py                       # 100,000 vectors
    .venv/bin/python tests/bench/bench_api.py --n 20000 --duration 5  # smoke

The load generator is Python (``http.client``): its own cost per request is in the
HTTP figures, so they are an upper bound on what HTTP adds.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from indexer.catalog import ItemStatus, items_table, vector_id_for
from indexer.config import Settings
from indexer.engine import Lookalike
from indexer.sample import write_sample_catalogue
from indexer.search import ItemQuery

REPO = Path(__file__).resolve().parents[2]


def build_home(home: Path, n: int, seed: int = 0) -> Lookalike:
    engine = Lookalike.open(Settings(home=home, database_url=None, _env_file=None))
    folder = home.parent / "sample"
    write_sample_catalogue(folder, products=10, shots=4, seed=seed)
    engine.ingest(folder)  # stored, embedded and indexed
    counts = engine.catalog.counts()
    synthetic = n - counts["embedded"] - counts["indexed"]
    rng = np.random.default_rng(seed)
    ids = [hashlib.sha256(f"synthetic-{i}".encode()).hexdigest() for i in range(synthetic)]
    now = datetime.now(UTC)
    rows = [
        {"id": item_id, "vector_id": vector_id_for(item_id), "product_id": f"s{i // 4}",
         "label": f"class-{i % 500}", "title": f"synthetic {i}", "status": ItemStatus.EMBEDDED,
         "model_version": engine.model.version, "created_at": now, "updated_at": now}
        for i, item_id in enumerate(ids)
    ]  # fmt: skip
    with engine.catalog.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(items_table.insert(), rows[start : start + 5000])
    for start in range(0, synthetic, 20000):
        chunk = ids[start : start + 20000]
        vectors = rng.standard_normal((len(chunk), engine.model.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        engine.vectors.append(np.array([vector_id_for(i) for i in chunk], np.int64), vectors)
    engine.build_index()
    return engine


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def in_process(engine: Lookalike, item_ids: list[str], images: list[bytes], rounds: int):
    """The API's searches without HTTP: the engine's one search, catalog join included."""
    for data in images[:5]:  # warm-up: first calls allocate
        engine.search(data, 10)
    item_times, image_times = [], []
    for r in range(rounds):
        started = time.perf_counter()
        engine.search(ItemQuery(item_ids[r % len(item_ids)]), 10)
        item_times.append(time.perf_counter() - started)
    for r in range(max(20, rounds // 20)):
        started = time.perf_counter()
        engine.search(images[r % len(images)], 10)
        image_times.append(time.perf_counter() - started)
    return item_times, image_times


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def client_loop(args) -> tuple[list[float], int]:
    port, requests, duration = args
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times, errors, i = [], 0, 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        body, content_type = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        conn.request("POST", "/api/v1/search?k=10", body=body,
                     headers={"Content-Type": content_type})  # fmt: skip
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        errors += response.status != 200
    conn.close()
    return times, errors


def load(port: int, requests, clients: int, duration: float):
    with mp.get_context("spawn").Pool(clients) as pool:
        pool.map(client_loop, [(port, requests, min(2.0, duration))] * clients)  # warm-up
        results = pool.map(client_loop, [(port, requests, duration)] * clients)
    times = [t for ts, _ in results for t in ts]
    errors = sum(e for _, e in results)
    return times, errors, len(times) / duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (2nd run)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--home", type=Path, help="default: a temporary directory")
    args = parser.parse_args()

    root = args.home or Path(tempfile.mkdtemp(prefix="bench-api-"))
    home = root / "home"
    started = time.perf_counter()
    engine = build_home(home, args.n)
    print(f"home with {engine.indexes.manifest(engine.indexes.current_version()).total} "
          f"vectors built in {time.perf_counter() - started:.0f} s ({engine.model.version})")
    real = engine.catalog.items_with_status("indexed")
    sample = [item for item in real if item.stored_path]
    item_ids = [item.id for item in real[:: max(1, len(real) // 500)]]
    images = [(home / item.stored_path).read_bytes() for item in sample[:20]]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LOOKALIKE_HOME": str(home), "LOOKALIKE_API_BIND": f"127.0.0.1:{port}",
           "LOOKALIKE_API_WORKERS": "1", "LOOKALIKE_API_THREADS": str(args.threads),
           "LOOKALIKE_API_KEY": secrets.token_hex(16)}  # fmt: skip
    log = open(root / "gunicorn.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "-c",
         str(REPO / "deploy" / "gunicorn.conf.py"), "--access-logfile", "/dev/null"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not get ready; see {root / 'gunicorn.log'}")
            time.sleep(0.5)

        by_item = [(json.dumps({"item_id": i}).encode(), "application/json") for i in item_ids]
        by_image = [multipart(data) for data in images]
        rows = []
        for name, requests, inproc_index in (("item id", by_item, 0), ("image", by_image, 1)):
            inproc = in_process(engine, item_ids, images, rounds=1000)[inproc_index]
            single, errors1, rps1 = load(port, requests, 1, args.duration)
            many, errors_n, rps_n = load(port, requests, args.clients, args.duration)
            rows.append((name, percentiles(inproc), percentiles(single), rps1,
                         percentiles(many), rps_n, errors1 + errors_n))  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)
        log.close()

    print(f"\n{args.n:,} vectors, gunicorn 1 worker x {args.threads} threads, "
          f"{os.cpu_count()} cores, {args.duration:g} s per run")
    print(f"| search by | in-process p50 / p99 | HTTP, 1 client: p50 / p99, req/s | "
          f"HTTP, {args.clients} clients: p50 / p99, req/s | HTTP adds at p50 | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (ip50, ip99), (s50, s99), rps1, (m50, m99), rps_n, errors in rows:
        print(f"| {name} | {ip50:.2f} / {ip99:.2f} ms | {s50:.2f} / {s99:.2f} ms, {rps1:.0f} | "
              f"{m50:.2f} / {m99:.2f} ms, {rps_n:.0f} | {s50 - ip50:+.2f} ms | {errors} |")


if __name__ == "__main__":
    main()

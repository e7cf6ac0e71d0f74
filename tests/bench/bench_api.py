"""HTTP API benchmark: gunicorn under wrk against the same searches in-process.

Builds a home with ``--n`` indexed vectors (a real sample catalogue embedded by the
current model, the rest synthetic unit vectors with catalog rows), starts gunicorn
with ``deploy/gunicorn.conf.py`` (``--workers`` processes, 2 by default), and drives it
with wrk (a C load generator: ``apt-get install wrk``), closed loop on keep-alive
connections: one connection, then ``--clients``. Reports p50/p99 latency and
requests/s for search by item id and by uploaded image, next to the in-process time
of the same searches (item → vector lookup, sharded search, catalog join; for an
image also decode and embed) in the same run, and each API process's memory: its
private (anonymous) RSS and its file-backed RSS, which holds the memory-mapped
vector store's pages, shared by every process through the page cache::

    .venv/bin/python tests/bench/bench_api.py                       # 100,000 vectors
    .venv/bin/python tests/bench/bench_api.py --n 20000 --duration 5  # smoke
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import resource
import secrets
import shutil
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


BOUNDARY = uuid.uuid4().hex


def multipart(data: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


# wrk's script: POST the bodies in turn; print wrk's own latency percentiles as JSON.
WRK_SCRIPT = """
local dir, count = os.getenv("BENCH_BODIES"), tonumber(os.getenv("BENCH_COUNT"))
local headers = {["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")}
local bodies = {}
for i = 1, count do
  local f = assert(io.open(dir .. "/" .. i .. ".body", "rb"))
  bodies[i] = f:read("*a")
  f:close()
end
local n = 0
request = function()
  n = n % count + 1
  return wrk.format("POST", "/api/v1/search?k=10", headers, bodies[n])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non2xx": %d, '
    .. '"socket_errors": %d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used, from /proc/PID/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def wrk(port: int, bodies: list[bytes], content_type: str, connections: int,
        duration: float, workdir: Path, server: list[int]) -> dict:
    """One wrk run (after a 2-second warm-up run): requests/s, p50/p99 ms, errors, and
    the CPU milliseconds per request of the ``server`` processes and of wrk itself (what
    the cores can serve whatever else runs: cores / (server + wrk) per request)."""
    folder = workdir / f"bodies-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    for i, body in enumerate(bodies, 1):
        (folder / f"{i}.body").write_bytes(body)
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "BENCH_BODIES": str(folder), "BENCH_COUNT": str(len(bodies)),
           "BENCH_CONTENT_TYPE": content_type}
    threads = min(connections, 2)

    def run(seconds: float) -> dict:
        server_before = cpu_seconds(server)
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, check=True)
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = cpu_seconds(server) - server_before
        wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime
                   - wrk_before.ru_utime - wrk_before.ru_stime)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        requests = max(1, summary["requests"])
        return {"rps": summary["requests"] / (summary["duration_us"] / 1e6),
                "p50": summary["p50_us"] / 1000, "p99": summary["p99_us"] / 1000,
                "errors": summary["non2xx"] + summary["socket_errors"],
                "server_cpu_ms": server_cpu * 1000 / requests,
                "wrk_cpu_ms": wrk_cpu * 1000 / requests}

    run(2)  # warm-up: connections, first-call allocations in the workers
    result = run(duration)
    shutil.rmtree(folder)
    return result


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def rss_mb(pid: int) -> tuple[float, float]:
    """(anonymous RSS, file-backed RSS) of a process in MB, from /proc/PID/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields.get("RssAnon", 0.0), fields.get("RssFile", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="indexed vectors")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--clients", type=int, default=8,
                        help="concurrent connections of the 2nd run (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--home", type=Path,
                        help="default: a temporary directory; one an earlier run built is reused")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")

    root = args.home or Path(tempfile.mkdtemp(prefix="bench-api-"))
    home = root / "home"
    started = time.perf_counter()
    if args.home and (home / "index").is_dir():  # built by an earlier run: reuse it
        engine = Lookalike.open(Settings(home=home, database_url=None, _env_file=None))
    else:
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
           "LOOKALIKE_API_WORKERS": str(args.workers),
           "LOOKALIKE_API_THREADS": str(args.threads),
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

        by_item = [json.dumps({"item_id": i}).encode() for i in item_ids]
        by_image = [multipart(data) for data in images]
        image_type = f"multipart/form-data; boundary={BOUNDARY}"
        rows = []
        for name, bodies, content_type, inproc_index in (
                ("item id", by_item, "application/json", 0),
                ("image", by_image, image_type, 1)):
            inproc = in_process(engine, item_ids, images, rounds=1000)[inproc_index]
            workers = worker_pids(server.pid)
            single = wrk(port, bodies, content_type, 1, args.duration, root, workers)
            many = wrk(port, bodies, content_type, args.clients, args.duration, root, workers)
            rows.append((name, percentiles(inproc), single, many))
        memory = {pid: rss_mb(pid) for pid in worker_pids(server.pid)}
    finally:
        server.terminate()
        server.wait(30)
        log.close()

    copy_mb = args.n * engine.model.dim * 4 / 2**20
    print(f"\n{args.n:,} vectors of {engine.model.dim}-d, gunicorn {args.workers} workers x "
          f"{args.threads} threads, {os.cpu_count()} cores, wrk, {args.duration:g} s per run")
    print(f"| search by | in-process p50 / p99 | HTTP, 1 connection: p50 / p99, req/s | "
          f"HTTP, {args.clients} connections: p50 / p99, req/s | HTTP adds at p50 | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (ip50, ip99), single, many in rows:
        print(f"| {name} | {ip50:.2f} / {ip99:.2f} ms | {single['p50']:.2f} / "
              f"{single['p99']:.2f} ms, {single['rps']:.0f} | {many['p50']:.2f} / "
              f"{many['p99']:.2f} ms, {many['rps']:.0f} | {single['p50'] - ip50:+.2f} ms | "
              f"{single['errors'] + many['errors']} |")
    print(f"\nCPU per request with {args.clients} connections (server: the {args.workers} "
          "workers; wrk: the load generator, on the same cores):")
    for name, _inproc, _single, many in rows:
        per_request = many["server_cpu_ms"] + many["wrk_cpu_ms"]
        print(f"  {name}: server {many['server_cpu_ms']:.2f} ms + wrk {many['wrk_cpu_ms']:.2f} "
              f"ms: {os.cpu_count()} cores serve at most {os.cpu_count() * 1000 / per_request:.0f}"
              " req/s")
    print(f"\nmemory per API process after the runs (a full copy of the vectors would be "
          f"{copy_mb:.0f} MB each):")
    for pid, (anon, file_backed) in sorted(memory.items()):
        print(f"  worker {pid}: private (anonymous) RSS {anon:.0f} MB, file-backed RSS "
              f"{file_backed:.0f} MB (shared pages: model files, libraries, vector store)")
    by_item_rps = rows[0][3]["rps"]
    adds = rows[0][2]["p50"] - rows[0][1][0]
    print(f"\nsearch by item id: {by_item_rps:.0f} req/s with {args.workers} workers "
          f"[target >= 1000: {'MET' if by_item_rps >= 1000 else 'NOT MET'}]; HTTP adds "
          f"{adds:.2f} ms at p50 [target <= 3 ms: {'MET' if adds <= 3 else 'NOT MET'}]")


if __name__ == "__main__":
    main()

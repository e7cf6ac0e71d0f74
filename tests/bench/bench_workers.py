"""Ingest throughput: the Celery workers against the in-process CLI, on the same real photos.

The same N photos (default 1,000 Grocery Store photos, read where they lie, never
copied into the repository) are served by a local HTTP server and listed in a
manifest of image URLs. Each path starts from an empty data directory and ends
when every photo is fetched, stored, embedded with the real pretrained model and
in the index:

* in-process: ``lookalike ingest manifest.csv --inline`` (one process: download
  threads, then embedding, then the index);
* workers: ``lookalike worker`` per queue (as in ``deploy/Procfile``: ingest with
  two processes, embed and index with one each), started and ready first, then
  ``lookalike ingest manifest.csv --background --wait``.

The target: the worker path takes at most 1.25x the in-process time. The table
shows both with and without the workers' start-up (which a running deployment
pays once, not per job)::

    .venv/bin/python tests/bench/bench_workers.py
    .venv/bin/python tests/bench/bench_workers.py --limit 200 --broker redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for extra in (str(REPO), str(REPO / "tests")):
    if extra not in sys.path:  # runnable as a plain script from anywhere
        sys.path.append(extra)
from local_http import LocalServer, send  # noqa: E402

DEFAULT_IMAGES = Path("/work/shared/datasets/grocerystore/dataset")
# The console script, not `python -m`: that puts the working directory on sys.path,
# where a folder named like a package (a data directory called "workers") would shadow it.
LOOKALIKE = [str(Path(sys.executable).with_name("lookalike"))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder searched recursively for *.jpg (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=1000, help="photos (default 1000)")
    parser.add_argument("--broker", help="a redis:// URL (default: the embedded transport)")
    parser.add_argument("--ingest-concurrency", type=int, default=2,
                        help="processes of the ingest worker (default 2)")
    parser.add_argument("--chunk", type=int, default=64, help="LOOKALIKE_INGEST_CHUNK_SIZE")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp folder)")
    return parser.parse_args(argv)


def photos(folder: Path, limit: int) -> list[Path]:
    found = sorted(folder.rglob("*.jpg"))
    if len(found) < limit:
        raise SystemExit(f"{folder}: {len(found)} photos, {limit} wanted")
    step = len(found) / limit  # spread over every class, not the first few
    return [found[int(i * step)] for i in range(limit)]


def serve(server: LocalServer, files: list[Path]) -> list[str]:
    urls = []
    for number, path in enumerate(files):
        route = f"/photos/{number}.jpg"
        server.route(route, lambda handler, path=path: send(
            handler, 200, path.read_bytes(), "image/jpeg"))
        urls.append(server.url(route))
    return urls


def environment(home: Path, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update({
        "LOOKALIKE_HOME": str(home),
        "LOOKALIKE_MODEL": "pretrained",
        "LOOKALIKE_FETCH_ALLOW_NETWORKS": json.dumps(["127.0.0.0/8"]),
        "LOOKALIKE_FETCH_PER_HOST_INTERVAL": "0",
        "LOOKALIKE_FETCH_RESPECT_ROBOTS": "false",
        "LOOKALIKE_INGEST_CHUNK_SIZE": str(args.chunk),
        "LOOKALIKE_RECRAWL_INTERVAL": "0",
        "LOOKALIKE_REINDEX_INTERVAL": "0",
        "PYTHONUNBUFFERED": "1",
    })
    if args.broker:
        env["LOOKALIKE_BROKER_URL"] = args.broker
        env["LOOKALIKE_BROKER_KEY_PREFIX"] = f"lookalike-bench-{uuid.uuid4().hex[:8]}:"
    return env


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    print(done.stdout.strip().splitlines()[0], file=sys.stderr)
    return took


def check(home: Path, expected: int, env: dict[str, str]) -> int:
    probe = subprocess.run(
        [*LOOKALIKE, "--home", str(home), "index", "stats", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )
    stats = json.loads(probe.stdout)
    indexed = stats["items"]["indexed"]
    if indexed != expected or stats["index"]["total"] != expected:
        raise SystemExit(f"{home}: {indexed} indexed, index holds {stats['index']['total']}, "
                         f"expected {expected}")
    return indexed


def start_workers(env: dict[str, str], cwd: Path, concurrency: int, logs: Path):
    specs = [("ingest", ["--queues", "ingest", "--concurrency", str(concurrency)]),
             ("embed", ["--queues", "embed"]), ("index", ["--queues", "index"])]
    started = []
    for name, options in specs:
        log = logs / f"{name}.log"
        with log.open("w") as handle:
            process = subprocess.Popen([*LOOKALIKE, "worker", *options], env=env, cwd=cwd,
                                       stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        started.append((process, log))
    deadline = time.monotonic() + 180
    for process, log in started:
        while " ready." not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_workers(started)
                raise SystemExit(f"worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    return started


def stop_workers(started) -> None:
    for process, _ in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
    for process, _ in started:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = photos(args.images, args.limit)
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    with tempfile.TemporaryDirectory(dir=args.work) as scratch, LocalServer() as server:
        work = Path(scratch)
        manifest = work / "photos.csv"
        with manifest.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_url", "product_id", "label"])
            for url, path in zip(serve(server, files), files, strict=True):
                writer.writerow([url, path.stem, path.parent.name])

        inline_home, worker_home = work / "home-inline", work / "home-workers"
        inline_env, worker_env = environment(inline_home, args), environment(worker_home, args)
        inline = timed([*LOOKALIKE, "ingest", str(manifest), "--inline", "--once"],
                       inline_env, work)
        check(inline_home, len(files), inline_env)

        boot_started = time.perf_counter()
        workers = start_workers(worker_env, work, args.ingest_concurrency, work)
        boot = time.perf_counter() - boot_started
        try:
            background = timed(
                [*LOOKALIKE, "ingest", str(manifest), "--background", "--wait", "--once"],
                worker_env, work,
            )
        finally:
            stop_workers(workers)
            if args.broker:  # leave nothing behind in a shared Redis
                import redis
                from redis_support import delete_prefixed

                client = redis.Redis.from_url(args.broker)
                delete_prefixed(client, worker_env["LOOKALIKE_BROKER_KEY_PREFIX"])
                client.close()
        check(worker_home, len(files), worker_env)

    n = len(files)
    broker = "Redis" if args.broker else "embedded transport"
    print(f"{n} photos ({megabytes:.0f} MiB) from {args.images}, pretrained model, "
          f"{os.cpu_count()} cores, chunks of {args.chunk}, workers on the {broker}")
    print(f"{'path':<44}{'seconds':>9}{'images/s':>10}{'vs in-process':>15}")
    rows = [
        ("in-process: lookalike ingest --inline", inline),
        ("workers: submit to indexed (warm workers)", background),
        ("workers, start-up included", background + boot),
    ]
    for name, seconds in rows:
        print(f"{name:<44}{seconds:>9.1f}{n / seconds:>10.1f}{seconds / inline:>14.2f}x")


if __name__ == "__main__":
    main()

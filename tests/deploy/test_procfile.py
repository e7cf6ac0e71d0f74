"""``deploy/Procfile``: it lists every process, and those processes together serve searches.

Run the production way: Redis as the broker, PostgreSQL as the catalog, each
Procfile line started as a process manager would (through a shell), images
added and searched over HTTP only.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from deploy_harness import Http, answers, free_port, job_finished, wait_until

from indexer.sample import write_sample_catalogue
from workers.supervisor import PROCESSES

PROCFILE = Path(__file__).resolve().parents[2] / "deploy" / "Procfile"
API_KEY = "procfile-test-key-0123456789"


def procfile_entries() -> dict[str, str]:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, command = line.partition(":")
            assert sep and name.strip() not in entries, line
            entries[name.strip()] = command.strip()
    return entries


def test_the_procfile_lists_exactly_the_supervised_processes():
    expected = {p.name: shlex.join(p.command()) for p in PROCESSES}
    assert procfile_entries() == expected


def test_the_procfile_starts_every_process_and_serves_a_search(
    tmp_path, make_setup, procs, redis_url, redis_prefix, postgres_schema_url
):
    port = free_port()
    setup = make_setup(
        broker_url=redis_url, broker_key_prefix=redis_prefix, database_url=postgres_schema_url,
        api_bind=f"127.0.0.1:{port}", api_workers=1, api_threads=2, api_key=API_KEY,
        sweep_interval=30,  # beat has something to schedule
    )  # fmt: skip
    env = setup.env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started = {
        name: procs.start(name, ["bash", "-c", f"exec {command}"], env, tmp_path)
        for name, command in procfile_entries().items()
    }

    def logs() -> str:
        return "\n".join(f"--- {name}\n{proc.text()[-2500:]}" for name, proc in started.items())

    http = Http(f"http://127.0.0.1:{port}", key=API_KEY)
    wait_until(lambda: answers(http, "/healthz"), "API", logs)
    for name in ("ingest", "embed", "index"):
        started[name].wait_for("ready.")
    started["beat"].wait_for("beat: Starting")

    photos = tmp_path / "photos"
    written = write_sample_catalogue(photos, products=3, shots=2, seed=9)
    job = http.upload("/api/v1/items", "images", written, label="sample")
    wait_until(job_finished(http, job["job_id"]),
               "finished job", logs)  # fmt: skip
    results = http.search(written[3], k=3)["results"]
    assert results and results[0]["score"] > 0.999, logs()
    stats = http.json("/api/v1/stats")
    assert stats["index"]["vectors"] == len(written)
    assert all(proc.popen.poll() is None for proc in started.values()), logs()

"""``lookalike demo``: one command starts the whole system on the embedded default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from deploy_harness import Http, answers, free_port, processes_with_home, wait_until

from indexer.sample import write_sample_catalogue

LOOKALIKE = str(Path(sys.executable).with_name("lookalike"))


def test_demo_starts_everything_indexes_the_images_and_serves_searches(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    write_sample_catalogue(photos, products=3, shots=3, seed=5)
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update(
        LOOKALIKE_MODEL=str(tiny_model), LOOKALIKE_DEVICE="cpu", LOOKALIKE_PRECISION="fp32",
        LOOKALIKE_LOADER_WORKERS="0", LOOKALIKE_API_WORKERS="1", LOOKALIKE_API_THREADS="2",
        OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
    )  # no broker, no database: the embedded default
    output = tmp_path / "demo.out"
    with output.open("wb") as sink:
        demo = subprocess.Popen(
            [LOOKALIKE, "--home", str(home), "demo", "--images", str(photos),
             "--bind", f"127.0.0.1:{port}"],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def logs() -> str:
        parts = [output.read_text(errors="replace")]
        for log in sorted((home / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    try:
        wait_until(lambda: "indexed:" in output.read_text() or demo.poll() is not None,
                   "finished demo job", logs)  # fmt: skip
        assert demo.poll() is None, logs()
        printed = output.read_text()
        assert f"Lookalike is running at http://127.0.0.1:{port}/" in printed
        assert "9 indexed, 0 failed" in printed, printed

        http = Http(f"http://127.0.0.1:{port}")
        assert answers(http, "/healthz")
        query = photos / "product-001" / "shot-02.jpg"
        results = http.search(query, k=3)["results"]
        assert results[0]["score"] > 0.999 and results[0]["label"] == "product-001"
        page = http.get("/")
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        assert len(processes_with_home(home.resolve())) >= 5  # web, 3 workers, beat

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(60) == 0, logs()
        assert "stopping" in output.read_text()
        assert processes_with_home(home.resolve()) == [], logs()
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in processes_with_home(home.resolve()):
            os.kill(pid, signal.SIGKILL)

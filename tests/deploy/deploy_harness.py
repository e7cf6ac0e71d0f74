"""Talking to a running deployment over real HTTP, and finding its processes."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import urllib3

WAIT = 150.0  # seconds: five processes importing torch on two cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Http:
    def __init__(self, base: str, key: str | None = None):
        self.base = base.rstrip("/")
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(30))
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path: str) -> urllib3.BaseHTTPResponse:
        return self.pool.request("GET", self.base + path, headers=self.headers)

    def json(self, path: str) -> dict:
        response = self.get(path)
        assert response.status == 200, (path, response.status, response.data[:500])
        return response.json()

    def upload(self, path: str, field: str, files: list[Path], **fields) -> dict:
        parts = [(field, (f.name, f.read_bytes(), "image/jpeg")) for f in files]
        parts += list(fields.items())
        response = self.pool.request("POST", self.base + path, fields=parts,
                                     headers=self.headers)  # fmt: skip
        assert response.status in (200, 202), (response.status, response.data[:500])
        return response.json()

    def search(self, image: Path, k: int = 5) -> dict:
        return self.upload(f"/api/v1/search?k={k}", "image", [image])


def wait_until(check: Callable[[], bool], what: str, logs: Callable[[], str],
               timeout: float = WAIT) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout} s; logs:\n{logs()[-6000:]}")
        time.sleep(0.5)


def answers(http: Http, path: str) -> bool:
    try:
        return http.get(path).status == 200
    except urllib3.exceptions.HTTPError:
        return False


def processes_with_home(home: Path) -> list[int]:
    """Live processes whose environment has ``LOOKALIKE_HOME=<home>`` (from /proc)."""
    needle = f"LOOKALIKE_HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def job_finished(http: Http, job_id: int) -> Callable[[], bool]:
    def check() -> bool:
        body = http.json(f"/api/v1/jobs/{job_id}")
        assert body["status"] != "failed", json.dumps(body)[:2000]
        return body["status"] == "done"

    return check

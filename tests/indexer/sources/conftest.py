"""Network tests here may reach loopback only: an audit hook refuses any other address
and records every connection attempt, so a test can show that none was made.

The fetcher's tests share ``fetch_harness`` (beside this file, imported by plain
name) and the ``server`` fixture.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from fetch_harness import JPEG  # noqa: E402 (needs the path above)
from local_http import LocalServer  # noqa: E402

_watch: list[tuple[str, int]] | None = None
_watch_lock = threading.Lock()


def _audit(event: str, args: tuple) -> None:
    if event != "socket.connect" or _watch is None:
        return
    address = args[1]
    if not isinstance(address, tuple):
        return  # a Unix socket
    host, port = str(address[0]), int(address[1])
    with _watch_lock:
        if _watch is not None:
            _watch.append((host, port))
    if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
        raise ConnectionRefusedError(f"test guard: connection to {host}:{port} blocked")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def connections() -> Iterator[list[tuple[str, int]]]:
    """(host, port) of every socket.connect during the test; non-loopback ones are blocked."""
    global _watch
    seen: list[tuple[str, int]] = []
    _watch = seen
    try:
        yield seen
    finally:
        _watch = None


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A real local HTTP server with a JPEG at /a.jpg."""
    with LocalServer() as local:
        local.serve("/a.jpg", JPEG)
        yield local

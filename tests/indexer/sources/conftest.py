"""Network tests here may reach loopback only: an audit hook refuses any other address
and records every connection attempt, so a test can show that none was made."""

from __future__ import annotations

import ipaddress
import sys
import threading
from collections.abc import Iterator

import pytest

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

"""Helpers for the fetcher's tests: policies, fetchers, resolvers and a streaming route.

Servers are real (:mod:`local_http`); only DNS is faked, by an injected resolver,
for names that must resolve to internal addresses.
"""

from __future__ import annotations

import ipaddress
import socket
import threading

import pytest
from images_factory import jpeg_bytes
from local_http import LocalServer

from indexer.sources.failures import FetchError
from indexer.sources.fetch import Fetcher
from indexer.sources.netguard import parse_networks
from indexer.sources.policy import FetchPolicy

JPEG = jpeg_bytes(seed=3)
LOOPBACK = parse_networks(["127.0.0.0/8"])
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>" + b"x" * 4000


def make_policy(**overrides) -> FetchPolicy:
    """Loopback allowed, no pause between requests, short timeouts, quick retries."""
    values: dict = dict(
        allow_networks=LOOPBACK,
        connect_timeout=2.0,
        read_timeout=2.0,
        deadline=5.0,
        per_host_interval=0.0,
        retries=2,
        backoff=0.01,
        max_backoff=1.0,
    )
    values.update(overrides)
    return FetchPolicy(**values)


def make_fetcher(**overrides) -> Fetcher:
    collaborators = {
        k: overrides.pop(k)
        for k in ("resolve", "sleep", "jitter", "rate_limiter", "ca_certs")
        if k in overrides
    }
    return Fetcher(make_policy(**overrides), **collaborators)


def fake_resolver(table: dict[str, str | list[str]], calls: list[str] | None = None):
    """getaddrinfo for made-up names: ``{"shop.example": "10.1.2.3"}``."""

    def resolve(host, port, family=0, type=0, proto=0, flags=0):
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ips = table[host]
        result = []
        for ip in [ips] if isinstance(ips, str) else ips:
            if ipaddress.ip_address(ip).version == 4:
                result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)))
            else:
                result.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, port, 0, 0)))
        return result

    return resolve


def fetch_error(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url)
    return info.value


def image_streamer(
    server: LocalServer, head: bytes, total: int, length: int | None = None
) -> threading.Event:
    """Route /stream: ``head``, then zeros up to ``total`` bytes, made as they are sent.

    Records in ``server.notes["sent"]`` how much went out before the client hung up.
    """
    done = threading.Event()

    def stream(handler) -> None:
        sent = 0
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "image/jpeg")
            if length is not None:
                handler.send_header("Content-Length", str(length))
            handler.end_headers()
            handler.wfile.write(head)
            sent = len(head)
            block = bytes(64 * 1024)
            while sent < total:
                handler.wfile.write(block)
                sent += len(block)
        finally:
            server.notes["sent"] = sent
            done.set()

    server.route("/stream", stream)
    return done

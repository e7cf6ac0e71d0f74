"""A raw HTTP/1.1 client for hostile requests: it reads the answer while it still sends.

A server may answer before it has read the request (a 413 for a declared length, a 400
for a header over its limit) and close the connection: a client that only reads once
it has sent everything would see a reset instead. This one sends from a thread and
reads in the caller's, so it sees whatever the server answered; a send that fails
after that (EPIPE, ECONNRESET) is expected and recorded, not raised.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

TIMEOUT = 60.0  # seconds without a byte from the server before the read gives up


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # bytes the client got onto the wire
    send_error: OSError | None = None
    closed: bool = field(default=False)  # the server closed the connection after answering


def exchange(address: tuple[str, int], head: bytes, body: Iterable[bytes] = ()) -> Answer:
    """Send ``head`` then ``body``'s chunks (in a thread) while reading one response."""
    sock = socket.create_connection(address, timeout=TIMEOUT)
    sent = [0]
    failed: list[OSError] = []

    def send() -> None:
        try:
            for chunk in _chain(head, body):
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError as error:
            failed.append(error)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        status, headers, rest, closed = _read_response(sock)
    finally:
        sender.join(TIMEOUT)
        sock.close()
    return Answer(status, headers, rest, sent[0], failed[0] if failed else None, closed)


def _chain(head: bytes, body: Iterable[bytes]):
    yield head
    yield from body


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock)
        if not chunk:
            raise AssertionError(f"connection closed before a response head: {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    closed = False
    while length < 0 or len(rest) < length:
        chunk = _recv(sock)
        if not chunk:
            closed = True
            break
        rest += chunk
    if not closed:  # answered in full: does the server keep the connection?
        sock.settimeout(2.0)
        closed = _recv(sock, quiet=True) == b""
    return status, headers, rest, closed


def _recv(sock: socket.socket, *, quiet: bool = False) -> bytes | None:
    """The next bytes; b"" once the server closed or reset (what arrived before a reset
    stays readable); None after a quiet spell when ``quiet`` is allowed."""
    try:
        return sock.recv(1 << 16)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        if quiet:
            return None
        raise AssertionError(f"no answer from the server within {TIMEOUT} s") from None


def zeros(size: int, chunk: int = 1 << 16):
    """``size`` zero bytes in chunks, never all in memory."""
    block = bytes(chunk)
    while size > 0:
        yield block[: min(size, chunk)]
        size -= chunk

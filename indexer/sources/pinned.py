"""One HTTP(S) exchange with a host, pinned to an address checked beforehand, on a deadline.

*Pinned*: the connection goes to an IP address the caller resolved and checked
(:mod:`indexer.sources.netguard`); nothing here resolves the host name again, so
DNS rebinding cannot swap the address between check and use. The name is still
used wherever HTTP and TLS need it: in the ``Host`` header, as the TLS server
name (SNI), and for the certificate check.

*On a deadline*: socket timeouts bound each wait (connect, one read), but a
server can drip one byte just inside every timeout and keep a download going
forever. :class:`Watchdog` therefore shuts the socket down when the whole
exchange's :class:`Deadline` passes, whatever the reader is blocked on (TLS
handshake, headers or body); the blocked call fails and the caller reports the
deadline. Body reads also cap their timeout at the time left.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.response import HTTPResponse

from indexer.sources.netguard import IPAddress


class DeadlineExceeded(TimeoutError):
    """The whole exchange took longer than its deadline."""


class Deadline:
    """A point in time an operation must finish by, ``seconds`` from now."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self._end

    def check(self) -> None:
        if self.expired:
            raise DeadlineExceeded(str(self))

    def cap(self, timeout: float) -> float:
        """``timeout``, shortened to the time left; raises when none is left."""
        self.check()
        return min(timeout, self.remaining())

    def __str__(self) -> str:
        return f"deadline of {self.seconds:g} s exceeded"


class Watchdog:
    """Shuts a socket down when a deadline passes, unblocking whoever waits on it.

    It keeps a duplicate of the socket's file descriptor: ``shutdown`` acts on the
    connection, not the descriptor, so it reaches the TLS socket that later wraps
    (and takes over) the plain one. The timer runs on wall-clock time.
    """

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock.dup()
            self._timer = threading.Timer(self.deadline.remaining(), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._sock is None:
                return
            self.fired = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer: nothing left to unblock

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class _Watched:
    """Connection mixin: hands the fresh TCP socket to the watchdog before TLS starts."""

    watchdog: Watchdog | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        if self.watchdog is not None:
            self.watchdog.watch(sock)
        return sock


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a request goes: the URL's scheme, host name and port, and its checked addresses."""

    scheme: str  # "http" or "https"
    host: str  # IDNA-encoded name, or an IP literal without brackets
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class PinnedResponse:
    """An open response; read the body in pieces with :meth:`read`. Close it when done."""

    def __init__(
        self,
        connection: HTTPConnection,
        response: HTTPResponse,
        sock: socket.socket,
        watchdog: Watchdog,
        read_timeout: float,
        address: IPAddress,
    ) -> None:
        self._connection = connection
        self._response = response
        self._sock = sock
        self._watchdog = watchdog
        self._read_timeout = read_timeout
        self.address = address
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers

    @property
    def deadline_passed(self) -> bool:
        return self._watchdog.fired or self._watchdog.deadline.expired

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` bytes, as soon as some arrive; ``b""`` at the end of the body."""
        timeout = self._watchdog.deadline.cap(self._read_timeout)
        if self._sock.fileno() != -1:  # -1: the whole body is in, http.client let go of it
            self._sock.settimeout(timeout)
        return self._response.read1(amount)

    def close(self) -> None:
        # No draining: closing with unread data resets the connection, which is
        # exactly what should happen to an oversized or unwanted body.
        try:
            self._response.close()
            self._connection.close()
        finally:
            self._watchdog.close()

    def __enter__(self) -> PinnedResponse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _connection(
    endpoint: Endpoint,
    address: IPAddress,
    timeout: float,
    ca_certs: str | None,
    watchdog: Watchdog,
) -> HTTPConnection:
    conn: _WatchedHTTPConnection | _WatchedHTTPSConnection
    if endpoint.scheme == "https":
        conn = _WatchedHTTPSConnection(
            str(address),
            endpoint.port,
            timeout=timeout,
            server_hostname=endpoint.host,  # SNI and certificate name: the URL's host
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
        )
    else:
        conn = _WatchedHTTPConnection(str(address), endpoint.port, timeout=timeout)
    conn.watchdog = watchdog
    return conn


def open_pinned(
    endpoint: Endpoint,
    target: str,
    headers: Mapping[str, str],
    *,
    deadline: Deadline,
    connect_timeout: float,
    read_timeout: float,
    ca_certs: str | None = None,
) -> PinnedResponse:
    """Send ``GET target`` to the first of ``endpoint.addresses`` that accepts a connection.

    ``target`` is the request target (``/path?query``). Only TCP connect failures
    move on to the next address; anything later (TLS, HTTP) is raised at once.
    Raises :class:`DeadlineExceeded` when the watchdog cut the exchange short, else
    the underlying urllib3, ``http.client``, ``ssl`` or ``OSError`` exception.
    """
    if not endpoint.addresses:
        raise ValueError(f"no address to connect to for {endpoint.host}")
    last_error: Exception | None = None
    for address in endpoint.addresses:
        watchdog = Watchdog(deadline)
        conn = _connection(endpoint, address, deadline.cap(connect_timeout), ca_certs, watchdog)
        try:
            conn.connect()
        except (NewConnectionError, ConnectTimeoutError) as exc:  # refused, unreachable, slow
            conn.close()
            watchdog.close()
            last_error = exc
            continue
        except BaseException as exc:
            conn.close()
            watchdog.close()
            if watchdog.fired or deadline.expired:
                raise DeadlineExceeded(str(deadline)) from exc
            raise
        return _exchange(conn, watchdog, address, target, headers, read_timeout)
    assert last_error is not None
    raise last_error


def _exchange(
    conn: HTTPConnection,
    watchdog: Watchdog,
    address: IPAddress,
    target: str,
    headers: Mapping[str, str],
    read_timeout: float,
) -> PinnedResponse:
    try:
        sock = conn.sock
        assert sock is not None
        # http.client drops conn.sock once a "Connection: close" response arrives;
        # the response keeps reading from it, so keep our own handle for timeouts.
        conn.timeout = watchdog.deadline.cap(read_timeout)
        conn.request(
            "GET", target, headers=dict(headers), preload_content=False, decode_content=False
        )
        response = conn.getresponse()
    except BaseException as exc:
        conn.close()
        watchdog.close()
        if watchdog.fired or watchdog.deadline.expired:
            raise DeadlineExceeded(str(watchdog.deadline)) from exc
        raise
    return PinnedResponse(conn, response, sock, watchdog, read_timeout, address)

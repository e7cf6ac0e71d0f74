"""A real HTTP(S) server on 127.0.0.1 that serves what a test tells it to, and misbehaves on cue.

Routes are plain functions of the request handler, so a test can send anything:
an image, a redirect, a body dripped one byte per second, an endless stream, a
lie in the Content-Type. Every request is recorded (path, headers, time), so
tests can assert what reached the server and what did not.

For HTTPS, :func:`make_tls_files` makes a throw-away CA and a server certificate
for given DNS names with the ``openssl`` command-line tool.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Route = Callable[[BaseHTTPRequestHandler], None]

# The client hanging up is how most misbehaving-server tests end.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    at: float  # time.monotonic()


@dataclass
class LocalServer:
    """Start with :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    tls: ssl.SSLContext | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    hits: Counter = field(default_factory=Counter)
    notes: dict[str, object] = field(default_factory=dict)  # what routes want to report

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> LocalServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append(Request(self.path, dict(self.headers), time.monotonic()))
                    server.hits[path] += 1
                route = server.routes.get(path)
                try:
                    if route is None:
                        send(self, 404, b"not found", "text/plain")
                    else:
                        route(self)
                except CLIENT_GONE:
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addressing ------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    # -- routes ----------------------------------------------------------------

    def route(self, path: str, handler: Route) -> None:
        self.routes[path] = handler

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str | None = "image/jpeg",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.routes[path] = lambda h: send(h, status, body, content_type, headers)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = lambda h: send(h, status, b"", None, {"Location": location})

    def sequence(self, path: str, *routes: Route) -> None:
        """Answer the n-th request to ``path`` with the n-th route (the last one repeats)."""
        count = iter(range(10**9))

        def pick(handler: BaseHTTPRequestHandler) -> None:
            routes[min(next(count), len(routes) - 1)](handler)

        self.routes[path] = pick


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """A complete response with a Content-Length."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def responder(
    status: int,
    body: bytes = b"",
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Route:
    return lambda h: send(h, status, body, content_type, headers)


# -- TLS ---------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the CA certificate, for the client's trust store
    cert: Path  # the server's certificate chain
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_tls_files(folder: Path, names: list[str]) -> TLSFiles:
    """A new CA and a server certificate for DNS ``names``, signed by it (EC keys: fast)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Lookalike test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={names[0]}",
        cwd=folder,
    )  # fmt: skip
    sans = ",".join(f"DNS:{name}" for name in names)
    (folder / "server.ext").write_text(
        f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip
    return TLSFiles(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")

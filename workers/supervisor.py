"""Every Lookalike process on one machine, started and stopped together (``lookalike up``).

:data:`PROCESSES` is the one list of what runs: the API with the web UI, one
worker per queue and beat. ``deploy/Procfile`` says the same for process
managers (a test keeps the two equal), and ``deploy/docker-compose.yml`` gives
each its own container.

Each process runs in its own session, so a Ctrl-C in the terminal reaches only
the supervisor, which then stops the children in order (API first, beat last)
with SIGTERM, and SIGKILL for any (and their children) that outlive the grace
period. Their output goes to ``<home>/logs/<name>.log``; when one dies, the
supervisor prints the end of its log and stops the rest: half a system that
looks alive is worse than a clear failure.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE = 20.0  # seconds a process gets to finish its task after SIGTERM
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Process:
    name: str
    args: tuple[str, ...]  # after the ``lookalike`` program

    def command(self, program: Sequence[str] = ("lookalike",)) -> list[str]:
        return [*program, *self.args]

    def procfile_line(self) -> str:
        return f"{self.name}: {shlex.join(self.command())}"


# ingest: downloads, I/O bound, several processes; embed: one per GPU (or the CPU);
# index: the single writer, exactly one process; beat: re-crawls, re-indexes, sweeps.
PROCESSES: tuple[Process, ...] = (
    Process("web", ("serve",)),
    Process("ingest", ("worker", "--queues", "ingest", "--concurrency", "4",
                       "--name", "ingest@%h")),
    Process("embed", ("worker", "--queues", "embed", "--concurrency", "1", "--name", "embed@%h")),
    Process("index", ("worker", "--queues", "index", "--concurrency", "1", "--name", "index@%h")),
    Process("beat", ("beat",)),
)  # fmt: skip


def lookalike_program() -> list[str]:
    """How to run ``lookalike`` with this interpreter (the script beside it, or ``-m``)."""
    script = Path(sys.executable).with_name("lookalike")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "indexer.cli"]


class ProcessExited(RuntimeError):
    """A supervised process ended on its own; the others were stopped."""

    def __init__(self, name: str, code: int | None, log_tail: str):
        super().__init__(f"the {name} process exited with status {code}")
        self.name, self.code, self.log_tail = name, code, log_tail


class Supervisor:
    """Start :data:`PROCESSES` (or a chosen few), watch them, stop them all together."""

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        processes: Sequence[Process] = PROCESSES,
        program: Sequence[str] | None = None,
    ):
        self.log_dir = Path(log_dir)
        self.env = dict(os.environ if env is None else env)
        self.processes = tuple(processes)
        self.program = list(program or lookalike_program())
        self.running: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for process in self.processes:
                with open(self.log_path(process.name), "ab") as log:
                    self.running[process.name] = subprocess.Popen(
                        process.command(self.program), env=self.env, stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
        except OSError:
            self.stop()
            raise

    def check(self) -> None:
        """Raise :class:`ProcessExited` (after stopping the rest) if any process has ended."""
        for name, child in self.running.items():
            code = child.poll()
            if code is not None:
                self.stop()
                raise ProcessExited(name, code, self.log_tail(name))

    def wait(self, until: Callable[[], bool] | None = None, poll: float = 0.5) -> None:
        """Watch the processes until ``until()`` is true (or forever); raises on a death."""
        while True:
            self.check()
            if until is not None and until():
                return
            time.sleep(poll)

    def stop(self, grace: float = STOP_GRACE) -> dict[str, int | None]:
        """SIGTERM every process in start order; SIGKILL what remains after ``grace``.

        Only the leader gets SIGTERM: gunicorn's master and Celery's main process
        then stop their own children gracefully (a worker finishes its task).
        """
        for child in self.running.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        codes: dict[str, int | None] = {}
        for name, child in self.running.items():
            try:
                codes[name] = child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                codes[name] = child.wait()
        for child in self.running.values():
            _signal_group(child, signal.SIGKILL)  # pool children a parent left behind
        self.running.clear()
        return codes

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)  # the child leads its own session
    except (ProcessLookupError, PermissionError):
        pass


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``:port`` means all interfaces) as a pair; a clear error otherwise."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, e.g. 127.0.0.1:8000; got {bind!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def require_free_port(host: str, port: int) -> None:
    """Fail now, with the port named, rather than in the API's log a minute later."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port} ({error.strerror}); "
                          "choose another with --bind HOST:PORT") from None


def browser_host(host: str) -> str:
    """The address a browser on this machine uses for a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers 200 (the API's liveness probe, while starting up)."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with direct.open(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False

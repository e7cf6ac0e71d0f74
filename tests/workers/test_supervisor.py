"""The supervisor behind ``lookalike up`` and ``lookalike demo``, on real child processes."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from workers.supervisor import (
    PROCESSES,
    Process,
    ProcessExited,
    Supervisor,
    browser_host,
    parse_bind,
    require_free_port,
)

PYTHON = [sys.executable]


def python(name: str, code: str) -> Process:
    return Process(name, ("-c", code))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_every_queue_has_a_worker_and_the_index_queue_exactly_one_consumer():
    names = [process.name for process in PROCESSES]
    assert names == ["web", "ingest", "embed", "index", "beat"]
    index = next(p for p in PROCESSES if p.name == "index")
    assert index.args[index.args.index("--concurrency") + 1] == "1"
    assert all(p.command()[0] == "lookalike" for p in PROCESSES)


def test_a_process_that_dies_stops_the_others_and_names_itself(tmp_path):
    supervisor = Supervisor(
        tmp_path / "logs", processes=[
            python("sleeper", "import time; time.sleep(120)"),
            python("crasher", "import sys, time; time.sleep(0.5); print('out of cheese');"
                              "sys.exit(3)"),
        ], program=PYTHON,
    )  # fmt: skip
    supervisor.start()
    sleeper = supervisor.running["sleeper"].pid
    with pytest.raises(ProcessExited) as raised:
        supervisor.wait(poll=0.1)
    assert raised.value.name == "crasher" and raised.value.code == 3
    assert "out of cheese" in raised.value.log_tail
    assert not alive(sleeper)
    assert supervisor.running == {}


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(tmp_path):
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "print('ready', flush=True); time.sleep(120)")
    supervisor = Supervisor(tmp_path / "logs", processes=[python("stubborn", code)],
                            program=PYTHON)  # fmt: skip
    supervisor.start()
    deadline = time.monotonic() + 30
    while "ready" not in supervisor.log_tail("stubborn") and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = supervisor.running["stubborn"].pid
    codes = supervisor.stop(grace=0.5)
    assert codes == {"stubborn": -9}
    assert not alive(pid)


def test_stop_ends_the_grandchildren_too(tmp_path):
    # Like a worker's pool: the leader exits on SIGTERM, its child would linger.
    code = ("import subprocess, sys, time;"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            "print(child.pid, flush=True); time.sleep(120)")
    supervisor = Supervisor(tmp_path / "logs", processes=[python("parent", code)],
                            program=PYTHON)  # fmt: skip
    supervisor.start()
    deadline = time.monotonic() + 30
    while not supervisor.log_tail("parent").strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(supervisor.log_tail("parent").split()[0])
    supervisor.stop(grace=5)
    time.sleep(0.2)
    assert not alive(grandchild)


def test_bind_addresses_are_checked_before_anything_starts():
    assert parse_bind("127.0.0.1:8000") == ("127.0.0.1", 8000)
    assert parse_bind(":8080") == ("0.0.0.0", 8080)
    assert parse_bind("[::1]:9000") == ("::1", 9000)
    for bad in ("8000", "localhost:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="host:port"):
            parse_bind(bad)
    assert browser_host("0.0.0.0") == "127.0.0.1"
    assert browser_host("::1") == "[::1]"


def test_a_port_in_use_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*--bind"):
            require_free_port("127.0.0.1", port)

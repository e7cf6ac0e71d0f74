"""The embedded broker: kombu's filesystem transport with atomic hand-over.

Messages are files in ``LOOKALIKE_HOME/broker/queue`` (see :mod:`workers.app`).
kombu's own filesystem channel creates a message file and then writes into it,
so a consumer listing the folder at that moment can take a half-written
message; and it claims a message by moving it to the system temp folder, which
is a copy (not an atomic rename) when that lies on another file system. This
channel writes to a hidden temp file, fsyncs it and renames it into place, and
claims a message by renaming it into ``claimed/`` beside the queue folder (one
rename wins, so two workers never take the same message), reads it and deletes it.
The exchange tables are read and written under a lock only (see :class:`Channel`).

There is no visibility timeout here: a message a worker took is gone from disk,
so a worker killed with SIGKILL loses the tasks it held (a pool *child* killed
that way is different: the worker rejects its task and it is put back). The
catalog is the source of truth, and the sweeper (``lookalike.sweep``) queues
the work of stalled jobs again; see :func:`indexer.jobs.stalled_work`.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    # The exchange tables (which queue a routing key reaches) live in one file per
    # exchange. kombu creates that file and then locks it, so a second process that
    # starts at the same moment can read it empty (and fail), or truncate what the
    # first wrote. Here the file is opened without truncating, always under the lock,
    # and an empty file reads as an empty table.

    def get_table(self, exchange: str) -> list:
        path = self._exchange_file(exchange)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"cannot open {path}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            text = _read_all(fd)
        finally:
            os.close(fd)
        return [filesystem.exchange_queue_t(*q) for q in (loads(text) if text else [])]

    def queue_bind(self, queue, exchange=None, routing_key="", arguments=None, **kwargs):
        super().queue_bind(queue, exchange, routing_key, arguments, **kwargs)
        # kombu skips the exchange file when this process's in-memory state (global to
        # the process) already knows the binding, e.g. from a broker in another folder
        # earlier in the process or a file deleted since; the file is what other
        # processes route by, so write it every time (adding a binding is idempotent).
        exchange = exchange or "amq.direct"
        meta = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, arguments)
        self._queue_bind(exchange, *meta)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        path = self._exchange_file(exchange)
        self.control_folder.mkdir(parents=True, exist_ok=True)
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ChannelError(f"cannot open {path}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = _read_all(fd)
            table = [filesystem.exchange_queue_t(*q) for q in (loads(text) if text else [])]
            if binding not in table:
                table.insert(0, binding)
                data = str_to_bytes(dumps(table))
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    @property
    def claimed_folder(self) -> str:
        return self.transport_options.get(
            "claimed_folder", os.path.join(self.data_folder_in, os.pardir, "claimed")
        )

    def _put(self, queue: str, payload: dict, **kwargs) -> None:
        # Wall-clock milliseconds first: names sort in sending order across processes.
        name = f"{time.time_ns() // 1_000_000:014d}_{uuid.uuid4().hex}.{queue}.msg"
        folder = self.data_folder_out
        temp = os.path.join(folder, f".{name}.tmp")  # hidden: never matches a queue
        try:
            with open(temp, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, os.path.join(folder, name))
        except OSError as exc:
            raise ChannelError(f"cannot add message {name!r} to {folder}") from exc

    def _get(self, queue: str) -> dict:
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        claimed = self.claimed_folder
        os.makedirs(claimed, exist_ok=True)
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            target = os.path.join(claimed, name)
            try:
                os.rename(os.path.join(folder, name), target)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            try:
                with open(target, "rb") as handle:
                    payload = handle.read()
            finally:
                os.unlink(target)
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    """``broker_transport = "workers.broker:Transport"`` with ``broker_url = "filesystem://"``."""

    Channel = Channel
    global_state = virtual.BrokerState()


def _read_all(fd: int) -> str:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return bytes_to_str(b"".join(chunks))
